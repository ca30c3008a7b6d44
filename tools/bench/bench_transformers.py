#!/usr/bin/env python3
"""Hugging Face transformers (PyTorch, float32), greedy (or --beams N) generate with min_new_tokens = max_new_tokens,
torch.set_num_threads(2). The encoder is timed by a separate call before each generate (which runs
it again: total is the generate call alone). Prints one JSON line (see benchlib.py).

    python tools/bench/bench_transformers.py --model DIR(pt) --input-file FILE --batch B
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def main():
    args = benchlib.parse_args(__doc__, default_variant="fp32").parse_args()
    import torch
    from transformers import AutoModelForSeq2SeqLM

    torch.set_num_threads(args.threads)
    model = Path(args.model)
    ids, _ = benchlib.tokenize(model / "tokenizer.json", benchlib.read_input(args))
    m = AutoModelForSeq2SeqLM.from_pretrained(model, torch_dtype=torch.float32).eval()
    x = torch.tensor([ids] * args.batch)
    mask = torch.ones_like(x)
    n = args.new_tokens

    def once():
        with torch.inference_mode():
            t0 = benchlib.now()
            m.get_encoder()(input_ids=x, attention_mask=mask)
            t1 = benchlib.now()
            out = m.generate(input_ids=x, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, num_beams=args.beams)
            t2 = benchlib.now()
        return t1 - t0, t2 - t1, out.shape[1] - 1  # minus the decoder start token

    res = benchlib.measure(once, args.runs)
    benchlib.report("transformers", args.variant, args.batch, n, len(ids), res, beams=args.beams)


if __name__ == "__main__":
    main()
