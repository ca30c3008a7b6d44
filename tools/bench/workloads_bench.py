#!/usr/bin/env python3
"""The workloads users run, beside CTranslate2 and transformers, on the t5-small bench model.

    python tools/bench/workloads_bench.py --models target/bench-models --duet target/release/duet
                                          [--repeats 3] [--only summarize,growth] [--out bench/RESULTS.md]

- summarize: beam 4, 512 input tokens, exactly 128 new tokens (EOS suppressed: a random model would stop
  anywhere), batch 1 and 8. duet fp32, int8, int8-dynenc (int8 with a dynamically quantized encoder), each
  also with --in-place-cache, int8-dyn-inplace (every graph quantized dynamically, in place) (`-inplace`: the self-attention cache appended in place), `fp32-rowcache` (the same export with a cross-attention
  cache row per beam: what duet ran before tools/share_cross_cache.py) and `fp32-arena` (fp32 with
  ONNX Runtime's CPU arena, the default before), CTranslate2 float32 (plain and
  with CT2_USE_EXPERIMENTAL_PACKED_GEMM=1) and int8, transformers float32 (batch 1, one timed run: it
  takes minutes). The ONNX Runtime Python loop has no beam search and is left out.
- growth: greedy batch 1, duet fp32 (and fp32-inplace along the output) against CTranslate2 float32; ms/step as the output grows (64, 128,
  256, 512 new tokens over input.txt) and as the input grows (128, 512, 2048 tokens, 64 new tokens).

Every configuration is its own process (the runners of run_bench.py), interleaved over --repeats rounds;
medians and min-max over rounds. Writes the section between <!-- workloads-bench:start --> and
<!-- workloads-bench:end --> of --out, every raw line to workloads.jsonl next to it.
"""
import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run_bench as rb  # noqa: E402

START, END = "<!-- workloads-bench:start -->", "<!-- workloads-bench:end -->"
SUMMARIZE = {"beams": 4, "input": "input-512.txt", "new_tokens": 128, "batches": [1, 8]}
GROWTH_OUTPUT = [64, 128, 256, 512]
GROWTH_INPUT = [("input.txt", 128), ("input-512.txt", 512), ("input-2048.txt", 2048)]


def cfg(workload, system, variant, batch, cmd, env=None, **shape):
    return {"workload": workload, "system": system, "variant": variant, "batch": batch, "cmd": cmd, "env": env or {},
            "concurrency": None, **shape}


def configurations(args, models):
    py, out = sys.executable, []
    only = set(args.only.split(","))
    duet = lambda v, inp, n, b, beams: [args.duet, "bench", "--model", str(models / v), "--input-file",  # noqa: E731
                                        str(models / inp), "--new-tokens", str(n), "--batch", str(b)] + (
        ["--set", f"num_beams={beams}"] if beams > 1 else [])
    ct2 = lambda v, inp, n, b, beams, runs=3: [py, str(HERE / "bench_ct2.py"), "--model", str(models / f"ct2-{v}"),  # noqa: E731
                                               "--input-file", str(models / inp), "--new-tokens", str(n), "--batch", str(b),
                                               "--beams", str(beams), "--runs", str(runs)]
    packed = {"CT2_USE_EXPERIMENTAL_PACKED_GEMM": "1"}
    if "summarize" in only:
        s = SUMMARIZE
        for b in s["batches"]:
            shape = {"beams": s["beams"], "new_tokens": s["new_tokens"], "input_tokens": 512}
            for v in ("fp32", "fp32-inplace", "fp32-rowcache", "int8", "int8-inplace", "int8-dynenc", "int8-dynenc-inplace",
                      "int8-dyn-inplace"):
                if args.duet and (models / v / "encoder_model.onnx").exists():
                    out.append(cfg("summarize", "duet", v, b, duet(v, s["input"], s["new_tokens"], b, s["beams"]), **shape))
            if args.duet:
                out.append(cfg("summarize", "duet", "fp32-arena", b, duet("fp32", s["input"], s["new_tokens"], b, s["beams"])
                               + ["--option", "memory_arena=true"], **shape))
            for v in ("fp32", "int8"):
                out.append(cfg("summarize", "ct2", v, b, ct2(v, s["input"], s["new_tokens"], b, s["beams"]), **shape))
            out.append(cfg("summarize", "ct2", "fp32-packed", b, ct2("fp32", s["input"], s["new_tokens"], b, s["beams"]),
                           env=packed, **shape))
            if b == 1 and not args.skip_transformers:
                out.append(cfg("summarize", "transformers", "fp32", b,
                               [py, str(HERE / "bench_transformers.py"), "--model", str(models / "pt"), "--input-file",
                                str(models / s["input"]), "--new-tokens", str(s["new_tokens"]), "--batch", str(b),
                                "--beams", str(s["beams"]), "--runs", "1"], **shape))
    if "growth" in only:
        for n in GROWTH_OUTPUT:
            shape = {"beams": 1, "new_tokens": n, "input_tokens": 128, "axis": "output"}
            if args.duet:
                out.append(cfg("growth", "duet", "fp32", 1, duet("fp32", "input.txt", n, 1, 1), **shape))
                if (models / "fp32-inplace" / "encoder_model.onnx").exists():
                    out.append(cfg("growth", "duet", "fp32-inplace", 1, duet("fp32-inplace", "input.txt", n, 1, 1), **shape))
            out.append(cfg("growth", "ct2", "fp32", 1, ct2("fp32", "input.txt", n, 1, 1), **shape))
        for inp, tokens in GROWTH_INPUT:
            shape = {"beams": 1, "new_tokens": 64, "input_tokens": tokens, "axis": "input"}
            if args.duet:
                out.append(cfg("growth", "duet", "fp32", 1, duet("fp32", inp, 64, 1, 1), **shape))
            out.append(cfg("growth", "ct2", "fp32", 1, ct2("fp32", inp, 64, 1, 1), **shape))
    return out


def key(c):
    return (c["workload"], c["system"], c["variant"], c["batch"], c.get("axis"), c["new_tokens"], c["input_tokens"])


def summarize(rows):
    groups = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    med = statistics.median
    out = {}
    for k, rs in groups.items():
        tps = [r["tokens_per_s"] for r in rs]
        out[k] = {"n": len(rs), "tps": med(tps), "tps_min": min(tps), "tps_max": max(tps),
                  "spread": (max(tps) - min(tps)) / med(tps) if med(tps) else 0.0,
                  "ms_per_step": med(r["ms_per_step"] for r in rs), "encoder_ms": med(r["encoder_ms"] for r in rs),
                  "rss": med(r["peak_rss_mib"] for r in rs), "rss_min": min(r["peak_rss_mib"] for r in rs),
                  "rss_max": max(r["peak_rss_mib"] for r in rs)}
    return out


def table(s, keys):
    lines = ["| system | variant | batch | tok/s median [min-max] | spread | ms/step | encoder ms | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for k in keys:
        r = s[k]
        lines.append(f"| {k[1]} | {k[2]} | {k[3]} | {r['tps']:.1f} [{r['tps_min']:.1f}-{r['tps_max']:.1f}] | "
                     f"{r['spread'] * 100:.0f}% | {r['ms_per_step']:.2f} | {r['encoder_ms']:.1f} | {r['rss']:.0f} |")
    return lines


def summarize_targets(s):
    get = lambda sys_, v, b: s.get(("summarize", sys_, v, b, None, SUMMARIZE["new_tokens"], 512))  # noqa: E731
    lines = []
    for b in SUMMARIZE["batches"]:
        ct2_fp32 = max((get("ct2", v, b) for v in ("fp32", "fp32-packed") if get("ct2", v, b)), key=lambda r: r["tps"],
                       default=None)
        best_ct2 = "fp32-packed" if ct2_fp32 is get("ct2", "fp32-packed", b) else "fp32"
        for v, factor in (("fp32", 1.3), ("fp32-inplace", 1.3), ("int8", 2.0), ("int8-inplace", 2.0), ("int8-dynenc", 2.0),
                          ("int8-dynenc-inplace", 2.0), ("int8-dyn-inplace", 2.0)):
            if v != "fp32" and v != "int8" and not get("duet", v, b):
                continue
            verdict, text = rb.ratio_check(get("duet", v, b), ct2_fp32, factor)
            lines.append(f"- batch {b}, duet {v} vs CTranslate2 float32 (its faster setting, {best_ct2}): **{verdict}**: {text}")
        verdict, text = rb.ratio_check(get("duet", "fp32", b), get("ct2", "fp32", b), 1.2, field="rss", lower_is_better=True)
        lines.append(f"- batch {b}, duet fp32 peak RSS vs CTranslate2 float32: **{verdict}**: {text}")
        one = get("duet", "fp32", b)
        inplace = get("duet", "fp32-inplace", b)
        if one and inplace:
            lines.append(f"- batch {b}, appending the self-attention cache in place (fp32-inplace vs fp32): "
                         f"{inplace['tps'] / one['tps']:.2f}x tok/s (medians), {inplace['rss']:.0f} vs {one['rss']:.0f} MiB peak RSS")
        for v, what in (("fp32-rowcache", "sharing the cross-attention cache between beams"),
                        ("fp32-arena", "no CPU arena")):
            other = get("duet", v, b)
            if one and other:
                lines.append(f"- batch {b}, {what} (fp32 vs {v}): {one['tps'] / other['tps']:.2f}x tok/s "
                             f"(medians), {one['rss']:.0f} vs {other['rss']:.0f} MiB peak RSS")
    return lines


def growth_lines(s):
    lines = []
    for axis, title, points in (("output", "new tokens (input 128)", [(n, 128) for n in GROWTH_OUTPUT]),
                                ("input", "input tokens (64 new)", [(64, t) for _, t in GROWTH_INPUT])):
        lines += [f"ms/step (median over rounds) as the {title} grows, greedy batch 1, fp32 (in-place: the export "
                  "with --in-place-cache):", "",
                  "| " + ("new tokens" if axis == "output" else "input tokens") + " | duet ms/step | duet in-place ms/step | "
                  "CTranslate2 ms/step | duet / CTranslate2 | duet encoder ms | duet peak RSS MiB |",
                  "|---|---|---|---|---|---|---|"]
        for n, t in points:
            d, c = s.get(("growth", "duet", "fp32", 1, axis, n, t)), s.get(("growth", "ct2", "fp32", 1, axis, n, t))
            ip = s.get(("growth", "duet", "fp32-inplace", 1, axis, n, t))
            lines.append(f"| {n if axis == 'output' else t} | {rb.fmt(d and d['ms_per_step'], 2)} | "
                         f"{rb.fmt(ip and ip['ms_per_step'], 2)} | {rb.fmt(c and c['ms_per_step'], 2)} | "
                         f"{rb.fmt(d and c and d['ms_per_step'] / c['ms_per_step'], 2)} | {rb.fmt(d and d['encoder_ms'], 1)} | "
                         f"{rb.fmt(d and d['rss'], 0)} |")
        lines.append("")
    return lines


def write_section(path, text):
    old = Path(path).read_text() if Path(path).exists() else ""
    block = f"{START}\n{text}\n{END}"
    if START in old and END in old:
        new = old[:old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    Path(path).write_text(new)


def report(args, configs, rows, errors, started, elapsed):
    s = summarize(rows)
    m = rb.machine()
    summ = sorted((k for k in s if k[0] == "summarize"), key=lambda k: (k[3], ["duet", "ct2", "transformers"].index(k[1]), k[2]))
    spreads = sorted(r["spread"] for r in s.values())
    out = ["## Workloads: summarization shape and cost growth (t5-small bench model)", "",
           f"`tools/bench/workloads_bench.py`, {started}, {elapsed / 60:.1f} min, {args.repeats} interleaved rounds; "
           f"{m['cpu']}, {m.get('affinity', m['cores'])} usable cores, SIMD {', '.join(m['flags'])}. "
           "Each configuration is a fresh process (load, 1 warmup, median of 3 timed runs; transformers 1); medians "
           "over rounds, min-max of tok/s. tok/s = batch x new tokens / generate time (the best beam's tokens). "
           "ms/step = (generate - encoder) / new tokens. Peak RSS = VmHWM.", "",
           f"### Summarization: beam {SUMMARIZE['beams']}, 512 input tokens, {SUMMARIZE['new_tokens']} new tokens", "",
           "`fp32-rowcache` is the fp32 export with a cross-attention cache row per beam (`--no-share-cross-cache`), "
           "the layout before `tools/share_cross_cache.py`; `fp32-arena` is fp32 with `memory_arena=true`, duet's "
           "default before; `ct2 fp32-packed` is CTranslate2 float32 with "
           "`CT2_USE_EXPERIMENTAL_PACKED_GEMM=1`.", "",
           *table(s, summ), "", "Targets (issue: performance, round 2):", "", *summarize_targets(s), "",
           "### Cost growth", "", *growth_lines(s),
           (f"Noise: spread (max-min)/median of tok/s over rounds: median {statistics.median(spreads) * 100:.0f}%, "
            f"largest {spreads[-1] * 100:.0f}%." if spreads else "No results."), ""]
    if errors:
        out += ["Failed runs:", "", *[f"- {e}" for e in errors], ""]
    out += ["Commands (one process each, round-robin):", "", "```",
            " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
            *[" ".join([*(f"{k}={v}" for k, v in c["env"].items()), *(shlex.quote(x) for x in c["cmd"])]) for c in configs],
            "```"]
    write_section(args.out, "\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True)
    ap.add_argument("--duet", help="the duet CLI ('none': leave duet out)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="summarize,growth")
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--out", default=str(rb.ROOT / "bench" / "RESULTS.md"))
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    models = Path(args.models).resolve()
    for f in [SUMMARIZE["input"], *(i for i, _ in GROWTH_INPUT)]:
        if not (models / f).exists():
            sys.exit(f"{models / f} missing: run tools/bench/make_bench_models.py {args.models}")
    args.duet = None if args.duet in (None, "", "none") else str(Path(args.duet).resolve())
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    configs = configurations(args, models)
    raw = Path(args.out).parent / "workloads.jsonl"
    raw.write_text("")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0, rows, errors, n = time.perf_counter(), [], [], len(configs)
    for rnd in range(args.repeats):
        for i in range(n):
            c = configs[(i + rnd) % n]
            label = f"{c['workload']} {c['system']} {c['variant']} b{c['batch']} in{c['input_tokens']} new{c['new_tokens']}"
            res, err = rb.run_one(c, {**env, **c["env"]}, args.timeout)
            if err:
                errors.append(f"round {rnd + 1}, {label}: {err}")
                print(f"[{rnd + 1}/{args.repeats} {i + 1}/{n}] {label}: FAILED {err[:300]}", file=sys.stderr, flush=True)
                continue
            res.update({k: c[k] for k in ("workload", "system", "variant", "batch", "beams", "new_tokens", "input_tokens")},
                       round=rnd + 1, axis=c.get("axis"))
            rows.append(res)
            with raw.open("a") as f:
                f.write(json.dumps(res) + "\n")
            print(f"[{rnd + 1}/{args.repeats} {i + 1}/{n}] {label}: {res['tokens_per_s']:.1f} tok/s, "
                  f"{res['ms_per_step']:.2f} ms/step, {res['peak_rss_mib']:.0f} MiB ({res['wall_s']:.0f}s)", file=sys.stderr,
                  flush=True)
    report(args, configs, rows, errors, started, time.perf_counter() - t0)
    print(f"wrote {args.out} and {raw}", file=sys.stderr)
    return 1 if errors and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
