#!/usr/bin/env python3
"""Greedy token agreement with the fp32 export, over more inputs than an export's own check, for every
ONNX variant and for CTranslate2 (so that its int8 is held to the same measure).

    python tools/bench/agreement.py MODELS_DIR [--inputs 128] [--new-tokens 64] [--out FILE.json]

Inputs: the benchmark's input.txt, then random sequences of ordinary tokens of 128 tokens (with EOS),
seeded. Every system decodes exactly --new-tokens tokens (EOS suppressed, as in the benchmark), greedy.
Agreement per input = tokens before the first divergence from the fp32 export / new tokens; the
result is the mean, with the count of identical sequences. ONNX variants run through ONNX Runtime's
CPU provider (the graphs duet runs); CTranslate2 through its Translator on the same checkpoint.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import export_lib as lib  # noqa: E402

CT2 = {"ct2-fp32": "float32", "ct2-int8": "int8"}


def inputs(models, n):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(models / "pt" / "tokenizer.json"))
    first = tok.encode((models / "input.txt").read_text().strip()).ids
    special = set(tok.get_added_tokens_decoder())
    ordinary = sorted(set(tok.get_vocab().values()) - special)
    rng = np.random.default_rng(2026)
    out = [first]
    while len(out) < n:
        out.append([int(x) for x in rng.choice(ordinary, len(first) - 1)] + [first[-1]])
    return tok, out


def onnx_tokens(model_dir, samples, new):
    layout = "with_past" if lib.has_cross_cache(model_dir) else (Path(model_dir) / lib.MERGED).exists()
    m = lib.OrtSeq2Seq(model_dir, merged=layout)  # the layout duet picks
    return [[int(t) for t in m.generate(np.array([s], np.int64), new, min_new=new, stop_at_eos=False)[0][0]]
            for s in samples]


def ct2_tokens(model_dir, compute, tok, samples, new):
    import ctranslate2

    tr = ctranslate2.Translator(str(model_dir), device="cpu", compute_type=compute, intra_threads=2)
    batch = [[tok.id_to_token(i) for i in s] for s in samples]
    res = tr.translate_batch(batch, beam_size=1, max_decoding_length=new, min_decoding_length=new,
                             return_end_token=True)
    return [[tok.token_to_id(p) for p in r.hypotheses[0]] for r in res]


def agreement(ref, got):
    per = []
    for r, g in zip(ref, got):
        n = 0
        while n < min(len(r), len(g)) and r[n] == g[n]:
            n += 1
        per.append(n / max(len(r), len(g)))
    return {"token_agreement": round(float(np.mean(per)), 4), "identical": sum(p == 1.0 for p in per),
            "inputs": len(per), "first_divergence_min": min(round(p * len(ref[0])) for p in per)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models")
    ap.add_argument("--inputs", type=int, default=128, help="(one near-tie flip costs 1/inputs of a sequence)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--variants", default="fp32-opt,int8,int4")
    ap.add_argument("--out")
    args = ap.parse_args()
    models = Path(args.models)
    tok, samples = inputs(models, args.inputs)
    ref = onnx_tokens(models / "fp32", samples, args.new_tokens)
    result = {"reference": "fp32 export (ONNX Runtime CPU)", "inputs": len(samples), "new_tokens": args.new_tokens,
              "systems": {}}
    for v in [v for v in args.variants.split(",") if (models / v).exists()]:
        result["systems"][f"onnx {v}"] = agreement(ref, onnx_tokens(models / v, samples, args.new_tokens))
    for name, compute in CT2.items():
        if (models / name).exists():
            got = ct2_tokens(models / name, compute, tok, samples, args.new_tokens)
            result["systems"][name] = agreement(ref, got)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
