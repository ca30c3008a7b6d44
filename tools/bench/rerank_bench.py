#!/usr/bin/env python3
"""Reranking by decoder scoring: 100 passages x 1 query on the t5-small bench model, duet beside
CTranslate2 and transformers (the reference), interleaved rounds.

    python tools/bench/rerank_bench.py --models target/bench-models [--repeats 3] [--out bench/RESULTS.md]

The score of a passage is the mean log p(query token | passage, earlier query tokens) over the query's
tokens and its end-of-sentence token, teacher-forced: duet's `rerank` in likelihood mode with the template
`{passage}` (batch_size 8), CTranslate2's `Translator.score_batch` (max_batch_size 8; it appends the
end-of-sentence token itself), and transformers' `T5ForConditionalGeneration` forward with the encoded
query as labels (batches of 8).
Passages: 100 of 127 words of the bench vocabulary (128 tokens with EOS), seeded; the query: 8 words.
Each system and variant runs in its own process (`--run`): load, 1 warmup call, the median of 3
timed calls over all 100 passages; passages/s = 100 / that median; peak RSS = VmHWM. Medians over
rounds, min-max of passages/s. Agreement: the largest score difference from transformers and whether
Kendall's tau between its ranking of the 100 passages and transformers'. Writes <!-- rerank-bench:start/end --> in --out.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchlib  # noqa: E402

START, END = "<!-- rerank-bench:start -->", "<!-- rerank-bench:end -->"
PASSAGES, PASSAGE_WORDS, QUERY_WORDS, BATCH = 100, 127, 8, 8
SYSTEMS = [("duet", "fp32"), ("duet", "int8"), ("duet", "int8-dynenc"), ("duet", "int8-dyn-inplace"), ("ct2", "fp32"),
           ("ct2", "int8"), ("transformers", "fp32")]


def workload(models):
    """(passages, query) from the bench vocabulary, seeded."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(models / "pt" / "tokenizer.json"))
    words = sorted(p[1:] for p in tok.get_vocab() if p.startswith("\u2581") and len(p) > 2)
    rng = np.random.default_rng(2026)
    passages = [" ".join(rng.choice(words, PASSAGE_WORDS)) for _ in range(PASSAGES)]
    return passages, " ".join(rng.choice(words, QUERY_WORDS))


def scorer(system, variant, models):
    """A function passages, query -> scores, with the model loaded."""
    if system == "duet":
        from search_bench import import_duet

        duet = import_duet()
        model = duet.Model(str(models / variant), options={"intra_threads": benchlib.THREADS})
        return lambda ps, q: model.rerank(q, ps, rerank_template="{passage}", batch_size=BATCH)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(models / "pt" / "tokenizer.json"))
    if system == "ct2":
        import ctranslate2

        tr = ctranslate2.Translator(str(models / f"ct2-{variant}"), device="cpu",
                                    compute_type={"fp32": "float32", "int8": "int8"}[variant],
                                    intra_threads=benchlib.THREADS, inter_threads=1)

        def ct2(ps, q):
            target = tok.encode(q, add_special_tokens=False).tokens
            res = tr.score_batch([tok.encode(p).tokens for p in ps], [target] * len(ps), max_batch_size=BATCH)
            return [float(np.mean(r.log_probs)) for r in res]
        return ct2
    import torch
    from transformers import T5ForConditionalGeneration

    torch.set_num_threads(benchlib.THREADS)
    model = T5ForConditionalGeneration.from_pretrained(str(models / "pt")).eval()

    def hf(ps, q):
        labels = torch.tensor([tok.encode(q).ids])
        out = []
        with torch.inference_mode():
            for i in range(0, len(ps), BATCH):
                ids = torch.tensor([tok.encode(p).ids for p in ps[i:i + BATCH]])  # equal lengths: no padding
                lab = labels.expand(len(ids), -1).contiguous()
                logits = model(input_ids=ids, labels=lab).logits
                lp = torch.log_softmax(logits.float(), -1).gather(-1, lab.unsqueeze(-1)).squeeze(-1)
                out += lp.mean(-1).tolist()
        return out
    return hf


def run_one(system, variant, models, runs):
    passages, query = workload(models)
    score = scorer(system, variant, models)
    scores = score(passages, query)  # warmup
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        scores = score(passages, query)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"system": system, "variant": variant, "passages": len(passages), "seconds": med,
                      "passages_per_s": len(passages) / med, "peak_rss_mib": benchlib.peak_rss_mib(),
                      "scores": scores}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(HERE.parent.parent / "bench" / "RESULTS.md"))
    ap.add_argument("--run", nargs=2, metavar=("SYSTEM", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    models = Path(args.models).resolve()
    if args.run:
        return run_one(*args.run, models, args.runs)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = {}
    for r in range(args.repeats):
        order = SYSTEMS[r % len(SYSTEMS):] + SYSTEMS[:r % len(SYSTEMS)]
        for system, variant in order:
            cmd = [sys.executable, __file__, "--models", str(models), "--runs", str(args.runs), "--run", system, variant]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            res = json.loads(out.strip().splitlines()[-1])
            rows.setdefault((system, variant), []).append(res)
            print(f"[{r + 1}/{args.repeats}] {system} {variant}: {res['passages_per_s']:.1f} passages/s, "
                  f"{res['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    write(Path(args.out), rows, started, args)


def write(out, rows, started, args):
    from run_bench import machine
    from scipy.stats import kendalltau
    from search_bench import write_section

    ref = np.array(rows[("transformers", "fp32")][-1]["scores"])
    m = machine()
    lines = [START, "## Reranking by decoder scoring: 100 passages x 1 query (t5-small bench model)", "",
             f"`tools/bench/rerank_bench.py`, {started}, {args.repeats} interleaved rounds; {m['cpu']}, {m['cores']} "
             f"cores, SIMD {', '.join(m['flags'])}. Score = mean log p(query | passage) over the query's 8 tokens and EOS, "
             "teacher-forced; 100 passages of 128 tokens, batches of 8; each system its own process (load, 1 warmup, "
             "median of 3 timed calls). Agreement with transformers (PyTorch fp32): the largest score difference, "
             "and Kendall's tau between the two rankings of the 100 passages (random passages score close together: "
             "near-ties swap at float32 noise).", "",
             "| system | variant | passages/s median [min-max] | ms per 100 | peak RSS MiB | max score diff vs transformers | Kendall tau |",
             "|---|---|---|---|---|---|---|"]
    for (system, variant), rs in rows.items():
        pps = [r["passages_per_s"] for r in rs]
        scores = np.array(rs[-1]["scores"])
        diff = float(np.abs(scores - ref).max())
        tau = kendalltau(scores, ref).statistic
        lines.append(f"| {system} | {variant} | {statistics.median(pps):.1f} [{min(pps):.1f}-{max(pps):.1f}] | "
                     f"{1000 * statistics.median(r['seconds'] for r in rs):.0f} | "
                     f"{statistics.median(r['peak_rss_mib'] for r in rs):.0f} | {diff:.2g} | {tau:.3f} |")
    lines.append(END)
    write_section(out, "\n".join(lines), START, END)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
