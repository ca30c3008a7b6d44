#!/usr/bin/env python3
"""One embedding-throughput measurement in its own process (run by search_bench.py).

    python tools/bench/search_embed_child.py --system duet|st|optimum --model DIR --texts FILE.json
                                             --batch B [--limit N] [--threads 2] [--max-length 256]

Loads the system, embeds the first 32 texts once (warmup), then times one pass over the first --limit
texts of FILE.json (a JSON list of strings) at batch --batch, truncating at --max-length tokens. Prints
one JSON line: texts, seconds, texts_per_s, load_s, dim, peak_rss_mib (this process's VmHWM, read at
the end). Systems:
  duet      duet.Model(DIR, options={"intra_threads": T}).embed(texts, batch_size=B, truncate_input=True)
  st        SentenceTransformer(DIR, device="cpu").encode(texts, batch_size=B), torch.set_num_threads(T)
  optimum   ORTModelForFeatureExtraction.from_pretrained(DIR) (an optimum export), intra_op_num_threads=T;
            tokenizer(padding=True, truncation=True, max_length=L), mean pooling + L2 normalisation in
            numpy; texts go in sentence-transformers' order (sorted by length, longest first)
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import peak_rss_mib  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WARMUP = 32


def load_duet(model_dir, threads, max_length):
    try:
        import duet
    except ImportError:
        sys.path.insert(0, str(ROOT / "bindings" / "python"))
        import duet
    model = duet.Model(model_dir, options={"intra_threads": threads})
    params = {"truncate_input": True, "max_input_tokens": max_length}
    try:
        model.embed(["probe"], batch_size=1, **params)
    except (duet.UnknownParam, duet.InvalidParam):
        params.pop("max_input_tokens")  # the model's own limit then

    def embed(texts, batch):
        return model.embed(texts, batch_size=batch, **params)

    return embed


def load_st(model_dir, threads, max_length):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = max_length

    def embed(texts, batch):
        return model.encode(texts, batch_size=batch, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False)

    return embed


def load_optimum(model_dir, threads, max_length):
    import numpy as np
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    model = ORTModelForFeatureExtraction.from_pretrained(model_dir, session_options=so, provider="CPUExecutionProvider")
    tok = AutoTokenizer.from_pretrained(model_dir)

    def embed(texts, batch):
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        for s in range(0, len(texts), batch):
            idx = order[s:s + batch]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="np")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].astype(np.float32)
            mean = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out[idx] = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return out

    return embed


LOADERS = {"duet": load_duet, "st": load_st, "optimum": load_optimum}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", required=True, choices=sorted(LOADERS))
    ap.add_argument("--label", help="the system's name in the output (default: --system)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True, help="JSON list of strings")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--limit", type=int, default=None, help="time only the first N texts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    texts = json.loads(Path(args.texts).read_text())
    timed = texts[:args.limit] if args.limit else texts
    t = time.perf_counter()
    embed = LOADERS[args.system](args.model, args.threads, args.max_length)
    load_s = time.perf_counter() - t
    embed(texts[:WARMUP], args.batch)
    t = time.perf_counter()
    vecs = embed(timed, args.batch)
    seconds = time.perf_counter() - t
    assert len(vecs) == len(timed)
    print(json.dumps({
        "system": args.label or args.system, "batch": args.batch, "texts": len(timed), "seconds": round(seconds, 4),
        "texts_per_s": round(len(timed) / seconds, 2), "load_s": round(load_s, 2), "dim": len(vecs[0]),
        "threads": args.threads, "max_length": args.max_length, "peak_rss_mib": round(peak_rss_mib(), 1),
    }), flush=True)


if __name__ == "__main__":
    main()
