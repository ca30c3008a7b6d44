#!/usr/bin/env python3
"""tests/fixtures/summarizer_reference.json: held-out inputs for tests/summarizer.rs, with what
transformers (PyTorch fp32, the reference implementation) generates from the same checkpoint.

    python tools/make_summarizer_reference.py CHECKPOINT [--n 24] [--out tests/fixtures/summarizer_reference.json]

CHECKPOINT: the transformers checkpoint of the bundled summarizer (`tools/pack_summarizer.py checkpoint`
or tools/train_summarizer.py's OUT/checkpoint). Inputs: a seeded sample of --n pairs from the
held-out "test" split (tools/debian_data.py) whose description is at most 200 tokens. For each: the
description, its synopsis, and the token ids of greedy decoding and of the model's generation_config
(beam 4, no_repeat_ngram_size 3), decoder start and EOS included, as transformers returns them.
The encoder runs at the exported epsilon (summarizer_weights.set_encoder_eps). Needs the bench venv.
"""
import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import debian_data  # noqa: E402
import summarizer_weights as sw  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default=str(HERE.parent / "tests" / "fixtures" / "summarizer_reference.json"))
    args = ap.parse_args()

    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import BartForConditionalGeneration

    torch.set_num_threads(2)
    ck = Path(args.checkpoint)
    model = BartForConditionalGeneration.from_pretrained(str(ck)).eval()
    sw.set_encoder_eps(model)
    gen = json.loads((ck / "generation_config.json").read_text())
    tok = Tokenizer.from_file(str(ck / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    splits, _ = debian_data.load_splits()
    test = [r for r in splits["test"] if len(tok.encode(debian_data.source_text(r[2])).ids) <= 200]
    picked = random.Random(args.seed).sample(test, args.n)
    cases = []
    with torch.inference_mode():
        for pkg, syn, desc in picked:
            text = debian_data.source_text(desc)
            ids = torch.tensor([tok.encode(text).ids])
            greedy = model.generate(ids, num_beams=1, do_sample=False, max_length=gen["max_length"], no_repeat_ngram_size=0)
            beam = model.generate(ids, num_beams=gen["num_beams"], max_length=gen["max_length"],
                                  no_repeat_ngram_size=gen["no_repeat_ngram_size"])
            cases.append({"package": pkg, "description": text, "synopsis": syn, "greedy": greedy[0].tolist(),
                          "beam": beam[0].tolist(), "beam_text": tok.decode(beam[0].tolist(), skip_special_tokens=True)})
    out = {"about": "held-out inputs and transformers' outputs for the bundled summarizer (tools/make_summarizer_reference.py)",
           "transformers": transformers.__version__, "torch": torch.__version__, "generation_config": gen, "cases": cases}
    Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    for c in cases[:5]:
        print(f"{c['package']}: {c['synopsis']!r} -> {c['beam_text']!r}")
    print(f"wrote {args.out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
