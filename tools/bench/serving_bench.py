#!/usr/bin/env python3
"""The serving benchmark: many callers on one model, as a service sees them.

    python tools/bench/serving_bench.py --model target/bench-models/fp32 --lib target/release/libduet.so
        [--window-lib OLD/libduet.so --window-bindings OLD/bindings/python] [--repeats 3] [--out bench/RESULTS.md]

16 simulated callers, each with its own Poisson arrival stream; every request has its own output
length (16-128 new tokens, exact: min = max) and params (greedy; sampling with its own seed,
top-k 50; beam search of 2) and an input of 32-127 words of the benchmark text. One workload
(seeded), served by three systems, each in its own process, interleaved over the repeats:

  serial      one call at a time, in arrival order (no concurrency at all)
  window      the previous engine's window batcher (`batch_window_ms=5`, `max_batch=8`): calls
              arriving within 5 ms with identical params share a batch; streaming and sampling
              calls run alone. Run from a build of the commit before the scheduler (--window-lib).
  continuous  this engine's scheduler (the default `scheduling=continuous`), streaming

Reported per system (median over repeats): throughput (generated tokens / wall time from the first
arrival to the last answer), p50/p99 latency and p50/p99 time to first piece, from each request's
arrival. The window batcher batches only calls without a stream callback, so its requests are sent
without one and their first piece is their whole answer. Every request's token ids must equal its
serial (solo) run; the report says how many do. Writes the section between <!-- serving-bench:start
--> and <!-- serving-bench:end --> of --out.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- serving-bench:start -->", "<!-- serving-bench:end -->"
CALLERS = 16


def workload(seed, n, rate, words):
    """n requests: arrival (s), caller, input text, params. Each caller's arrivals are a Poisson
    stream of rate/CALLERS."""
    rng = random.Random(seed)
    requests = []
    for caller in range(CALLERS):
        t = 0.0
        for _ in range(n // CALLERS):
            t += rng.expovariate(rate / CALLERS)
            length = rng.randint(16, 128)
            kind = rng.choices(["greedy", "sample", "beam"], weights=[6, 2, 2])[0]
            params = {"max_new_tokens": length, "min_new_tokens": length}
            if kind == "sample":
                params.update(do_sample=True, top_k=50, seed=rng.randint(1, 1 << 30))
            elif kind == "beam":
                params.update(num_beams=2)
            text = " ".join(words[: rng.randint(32, len(words))])
            requests.append({"arrival": t, "caller": caller, "text": text, "params": params, "kind": kind})
    requests.sort(key=lambda r: r["arrival"])
    for i, r in enumerate(requests):
        r["id"] = i
    return requests


def child(args):
    """Serves the workload in this process; prints one JSON object."""
    sys.path.insert(0, args.bindings)
    import duet

    requests = json.loads(Path(args.workload).read_text())
    options = {"batch_window_ms": "5", "max_batch": "8"} if args.system == "window" else {}
    if args.system == "serial":
        options = {"scheduling": "off"} if args.has_scheduling else {}
    model = duet.Model(args.model, options=options or None, max_input_tokens=1 << 20)
    model.generate("warm up", max_new_tokens=4)
    stream = args.system == "continuous"
    results = [None] * len(requests)

    def serve(r, t0):
        first = []
        on_piece = (lambda piece, i, tok: first.append(time.perf_counter()) if not first else None) if stream else None
        g = model.generate(r["text"], stream=on_piece, **r["params"])
        done = time.perf_counter()
        arrived = t0 + r["arrival"]
        results[r["id"]] = {"id": r["id"], "tokens": len(g.token_ids), "token_ids": g.token_ids,
                            "latency": done - arrived, "ttft": (first[0] if first else done) - arrived}

    t0 = time.perf_counter() + 0.2
    if args.system == "serial":
        for r in requests:
            wait = t0 + r["arrival"] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            serve(r, t0)
    else:
        def caller(mine):
            for r in mine:
                wait = t0 + r["arrival"] - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                serve(r, t0)

        threads = [threading.Thread(target=caller, args=([r for r in requests if r["caller"] == c],)) for c in range(CALLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - (t0 + requests[0]["arrival"])
    print(json.dumps({"system": args.system, "wall": wall, "results": results}))


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_system(args, system, lib, bindings, workload_file):
    env = dict(os.environ, DUET_LIBRARY=str(lib))
    env.setdefault("DUET_ORT_LIBRARY", str(ROOT / ".ort/lib/libonnxruntime.so.1.31.1"))
    cmd = [sys.executable, __file__, "--child", "--system", system, "--model", args.model, "--workload", str(workload_file),
           "--bindings", str(bindings)]
    if system == "serial" and bindings == ROOT / "bindings/python":
        cmd.append("--has-scheduling")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(run):
    rs = run["results"]
    tokens = sum(r["tokens"] for r in rs)
    return {"tok_s": tokens / run["wall"], "p50": pct([r["latency"] for r in rs], 0.5), "p99": pct([r["latency"] for r in rs], 0.99),
            "ttft50": pct([r["ttft"] for r in rs], 0.5), "ttft99": pct([r["ttft"] for r in rs], 0.99), "wall": run["wall"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "target/bench-models/fp32"))
    ap.add_argument("--lib", default=str(ROOT / "target/release/libduet.so"))
    ap.add_argument("--window-lib", help="libduet.so of the commit before the scheduler (its window batcher)")
    ap.add_argument("--window-bindings", help="that commit's bindings/python")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--rate", type=float, default=6.0, help="arrivals per second, all callers together")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--bindings", help=argparse.SUPPRESS)
    ap.add_argument("--has-scheduling", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    words = (Path(args.model).parent / "input.txt").read_text().split()
    requests = workload(args.seed, args.requests, args.rate, words)
    workload_file = ROOT / "target/serving-workload.json"
    workload_file.write_text(json.dumps(requests))
    systems = [("serial", Path(args.lib), ROOT / "bindings/python")]
    if args.window_lib:
        systems.append(("window", Path(args.window_lib), Path(args.window_bindings)))
    systems.append(("continuous", Path(args.lib), ROOT / "bindings/python"))
    runs = {name: [] for name, _, _ in systems}
    for repeat in range(args.repeats):
        for name, lib, bindings in systems:
            run = run_system(args, name, lib, bindings, workload_file)
            runs[name].append(run)
            s = summarize(run)
            print(f"repeat {repeat + 1} {name:10s} {s['tok_s']:7.1f} tok/s  p50 {s['p50']:6.2f} s  p99 {s['p99']:6.2f} s  "
                  f"ttft p50 {s['ttft50']:6.2f} s  p99 {s['ttft99']:6.2f} s", flush=True)

    reference = {r["id"]: r["token_ids"] for r in runs["serial"][0]["results"]}
    table = []
    for name, _, _ in systems:
        stats = [summarize(r) for r in runs[name]]
        med = {k: statistics.median(s[k] for s in stats) for k in stats[0]}
        spread = {k: (min(s[k] for s in stats), max(s[k] for s in stats)) for k in ("tok_s", "p99")}
        same = sum(all(r["token_ids"] == reference[r["id"]] for r in run["results"]) for run in runs[name])
        identical = [sum(r["token_ids"] == reference[r["id"]] for r in run["results"]) for run in runs[name]]
        table.append((name, med, spread, identical, same))
    by = {name: med for name, med, _, _, _ in table}
    lines = [START, "## Serving: 16 callers, staggered arrivals, mixed lengths and params", "",
             f"`tools/bench/serving_bench.py` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, model "
             f"`{Path(args.model).name}` — t5-small architecture, random weights): {len(requests)} requests from "
             f"{CALLERS} callers, Poisson arrivals at {args.rate:g}/s in all, 16-128 new tokens each (exact), "
             "60% greedy, 20% sampling (own seed, top-k 50), 20% beam 2, inputs of 32-127 words. "
             f"Medians of {args.repeats} interleaved repeats, [min, max] beside them; latency and time to first "
             "piece from each request's arrival.", "",
             "| system | tokens/s | p50 latency | p99 latency | p50 first piece | p99 first piece | outputs equal to solo |",
             "|---|---|---|---|---|---|---|"]
    for name, med, spread, identical, _ in table:
        lines.append(f"| {name} | {med['tok_s']:.1f} [{spread['tok_s'][0]:.1f}, {spread['tok_s'][1]:.1f}] | {med['p50']:.2f} s | "
                     f"{med['p99']:.2f} s [{spread['p99'][0]:.2f}, {spread['p99'][1]:.2f}] | {med['ttft50']:.2f} s | "
                     f"{med['ttft99']:.2f} s | {min(identical)}/{len(requests)} (worst repeat) |")
    lines.append("")
    if "window" in by:
        c, w = by["continuous"], by["window"]
        lines.append(f"Continuous over window: throughput {c['tok_s'] / w['tok_s']:.2f}x (target >= 1.5x), p99 latency "
                     f"{c['p99'] / w['p99']:.2f}x (target <= 0.6x), first piece p50 {c['ttft50'] / w['ttft50']:.2f}x. "
                     "The window batcher merges only calls with identical params, and here every request has its own "
                     "length, so it serves them as concurrent solo calls.")
    c, s = by["continuous"], by["serial"]
    lines += [f"Continuous over serial: throughput {c['tok_s'] / s['tok_s']:.2f}x, p99 latency {c['p99'] / s['p99']:.2f}x.", "", END]
    section = "\n".join(lines)
    from search_bench import write_section  # noqa: PLC0415 - the shared section writer

    write_section(args.out, section, START, END)
    print(section)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
