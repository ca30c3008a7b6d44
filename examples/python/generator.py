#!/usr/bin/env python3
"""Driving a generation by hand from Python: pull events one at a time, stop when you have enough.

    python examples/python/generator.py MODEL_DIR [STOP_AFTER_PIECES]

Checks what it prints: the pieces add up to the generator's text, which equals Model.generate's
for the same input; a generator stopped early keeps a prefix and says "cancelled"; no helper
thread is started. Exits non-zero if a check fails.
"""
import sys
import threading

import duet


def main() -> int:
    model_dir = sys.argv[1]
    stop_after = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    text = "translate English to German: The house is wonderful."
    threads_before = threading.active_count()
    with duet.Model(model_dir, max_new_tokens=16) as model:
        reference = model.generate(text)

        with model.generator(text) as gen:
            pieces = []
            for event in gen:
                if event.kind == "text":
                    print(f"[token {event.token_id}] {event.piece}")
                    pieces.append(event.piece)
                else:
                    print(f"[finished: {event.finish_reason}]")
            assert "".join(pieces) == gen.result.text == reference.text, (pieces, gen.result.text, reference.text)
        print(f"pulled {len(pieces)} pieces: {reference.text!r}, as Model.generate")

        # Exactly 400 tokens: the cancel lands while the scheduler is still decoding.
        long = {"max_new_tokens": 400, "min_new_tokens": 400}
        long_reference = model.generate(text, **long)
        with model.generator(text, **long) as gen:
            pieces = []
            for event in gen:
                if event.kind == "text":
                    pieces.append(event.piece)
                    if len(pieces) == stop_after:
                        gen.cancel()  # the loop ends at the next step
            partial = gen.result
        assert len(pieces) == stop_after, pieces
        assert long_reference.text.startswith(partial.text), (partial.text, long_reference.text)
        assert partial.finish_reason == "cancelled", partial.finish_reason
        print(f"stopped after {stop_after} pieces: {partial.text!r} ({partial.finish_reason})")
    assert threading.active_count() == threads_before, "a generator starts no Python thread"
    print("generator example passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
