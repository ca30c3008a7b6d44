#!/usr/bin/env python3
"""CTranslate2 Translator (CPU, intra_threads 2, inter_threads 1), greedy (beam_size 1) or --beams N
(the best hypothesis), min_decoding_length = max_decoding_length = --new-tokens. compute_type from the variant: fp32 ->
float32, int8 -> int8. CTranslate2 has no separate encoder call: encoder_ms is estimated from a
max_decoding_length=1 call (encoder + one step) minus one step of the full run. Prints one JSON line
(see benchlib.py).

    python tools/bench/bench_ct2.py --model DIR(ct2-fp32|ct2-int8) --input-file FILE --batch B [--beams N]

CT2_USE_EXPERIMENTAL_PACKED_GEMM=1 in the environment (CTranslate2's packed float32 GEMM) labels the
variant `<variant>-packed`.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

COMPUTE = {"fp32": "float32", "int8": "int8", "int8_float32": "int8_float32", "int16": "int16"}


def main():
    args = benchlib.parse_args(__doc__).parse_args()
    import ctranslate2

    model = Path(args.model)
    variant = args.variant or model.name.removeprefix("ct2-")
    tok_json = model / "tokenizer.json"
    if not tok_json.exists():  # the converter does not copy it: use the checkpoint's, next to it
        tok_json = model.parent / "pt" / "tokenizer.json"
    ids, pieces = benchlib.tokenize(tok_json, benchlib.read_input(args))
    tr = ctranslate2.Translator(str(model), device="cpu", compute_type=COMPUTE[variant],
                                intra_threads=args.threads, inter_threads=1)
    batch = [pieces] * args.batch
    n = args.new_tokens

    def gen(length):
        t0 = benchlib.now()
        out = tr.translate_batch(batch, beam_size=args.beams, num_hypotheses=1, max_decoding_length=length,
                                 min_decoding_length=length, return_end_token=True)
        return benchlib.now() - t0, min(len(r.hypotheses[0]) for r in out)

    def once():
        t1, _ = gen(1)
        total, got = gen(n)
        step = (total - t1) / (n - 1)
        return t1 - step, total, got

    res = benchlib.measure(once, args.runs)
    packed = os.environ.get("CT2_USE_EXPERIMENTAL_PACKED_GEMM", "0") not in ("", "0")
    benchlib.report("ct2", variant + ("-packed" if packed else ""), args.batch, n, len(ids), res, beams=args.beams,
                    compute_type=COMPUTE[variant], packed_gemm=packed,
                    encoder_note="estimated: (max_decoding_length=1 call) - one step")


if __name__ == "__main__":
    main()
