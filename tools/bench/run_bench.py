#!/usr/bin/env python3
"""Side-by-side benchmark of duet against transformers, an ONNX Runtime Python loop and CTranslate2.

    python tools/bench/run_bench.py --models target/bench-models --duet target/release/duet
                                    [--repeats 5] [--out bench/RESULTS.md]

Every (system, variant, batch in {1, 8, 32}) configuration, plus duet with 8 concurrent batch-1 callers, is
one fresh process (the runners in this directory; `duet bench` for duet), each printing one JSON line.
The configurations run interleaved: round-robin over all of them, --repeats rounds (each round starts
one configuration later, so none always runs first). Reports the median and min-max over rounds, the
issue's targets, machine and versions in --out (markdown) and every raw line in results.jsonl next to
it. duet gets DUET_ORT_LIBRARY from the environment; when unset, the onnxruntime Python package's
library. --duet none (or a missing binary with --allow-missing-duet) leaves duet out.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NEW_TOKENS = 64
ONNX_VARIANTS = ["fp32", "fp32-opt", "fp32-fused", "fp32-inplace", "int8", "int8-inplace", "int8-dynenc",
                 "int8-dynenc-inplace", "int8-dyn-inplace", "int4"]
CT2_VARIANTS = ["fp32", "int8"]
NOISE = 0.10  # the machine's noise floor (GUIDE.md section 8)


def fmt(value, digits):
    """A number for the table, or a dash where the run does not measure it."""
    return "-" if value is None else f"{value:.{digits}f}"


def config(system, variant, batch, cmd, concurrency=None):
    return {"system": system, "variant": variant, "batch": batch, "concurrency": concurrency, "cmd": cmd}


def key(c):
    return (c["system"], c["variant"], c["batch"], c.get("concurrency"))


def configurations(args, models, input_file):
    py, common = sys.executable, ["--input-file", str(input_file), "--new-tokens", str(NEW_TOKENS)]
    variants = [v for v in args.variants.split(",") if (models / v / "encoder_model.onnx").exists()]
    systems = set(args.systems.split(","))
    out = []
    for b in args.batches:
        bb = ["--batch", str(b)]
        if "transformers" in systems:
            out.append(config("transformers", "fp32", b,
                              [py, str(HERE / "bench_transformers.py"), "--model", str(models / "pt"), *common, *bb]))
        if "ort-loop" in systems:
            for v in variants:
                out.append(config("ort-loop", v, b,
                                  [py, str(HERE / "bench_ort_loop.py"), "--model", str(models / v), *common, *bb]))
        if "ct2" in systems:
            for v in CT2_VARIANTS:
                if (models / f"ct2-{v}" / "model.bin").exists():
                    out.append(config("ct2", v, b, [py, str(HERE / "bench_ct2.py"), "--model",
                                                    str(models / f"ct2-{v}"), *common, *bb]))
        if args.duet and "duet" in systems:
            opts = [x for o in args.duet_option for x in ("--option", o)]
            for v in variants:
                out.append(config("duet", v, b, [args.duet, "bench", "--model", str(models / v), *common, *bb, *opts]))
    if args.duet and "duet" in systems and args.concurrency > 1:
        opts = [x for o in args.duet_option for x in ("--option", o)]
        for v in [v for v in args.concurrency_variants.split(",") if v in variants]:
            out.append(config("duet", v, 1, [args.duet, "bench", "--model", str(models / v), *common, "--batch", "1",
                                              "--concurrency", str(args.concurrency), *opts], args.concurrency))
    return out


def run_one(c, env, timeout):
    t = time.perf_counter()
    try:
        p = subprocess.run(c["cmd"], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout}s"
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    if p.returncode != 0 or not lines:
        return None, f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-600:]}"
    try:
        res = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return None, f"bad JSON line: {e}: {lines[-1][:200]}"
    res["wall_s"] = round(time.perf_counter() - t, 2)
    return res, None


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

def describe_quantization(q):
    """An export's duet_export.json `quantization`, in words."""
    if not q:
        return "float32"
    parts = [f"{q['bits']}-bit MatMulNBits, block {q['block_size']}, accuracy_level {q['accuracy_level']}"
             ] if q["method"] == "MatMulNBits" else []
    parts += [f"{graphs} dynamic int8 (MatMulInteger)" for graphs in ("encoder", "decoders") if q.get(graphs)]
    return ", ".join(parts)


def machine():
    info = {"cpu": platform.processor() or "?", "cores": os.cpu_count(), "flags": []}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for line in cpuinfo.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "model name":
                info["cpu"] = v.strip()
            elif k.strip() == "flags":
                flags = set(v.split())
                info["flags"] = [f for f in ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                                             "avx_vnni", "amx_int8"] if f in flags]
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(mem[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def versions():
    out = {"python": platform.python_version()}
    for p in ["torch", "transformers", "onnxruntime", "ctranslate2", "tokenizers", "numpy", "optimum", "onnx"]:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True).stdout.strip()
        out["duet (git)"] = rev or "?"
    except OSError:
        pass
    return out


def summarize(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["system"], r["variant"], r["batch"], r.get("concurrency")), []).append(r)
    out = {}
    for k, rs in groups.items():
        tps = [r["tokens_per_s"] for r in rs]
        med = statistics.median
        out[k] = {
            "n": len(rs), "tps": med(tps), "tps_min": min(tps), "tps_max": max(tps),
            "spread": (max(tps) - min(tps)) / med(tps) if med(tps) else 0.0,
            # Concurrent-caller runs report only the aggregate rate.
            "ms_per_step": med(r["ms_per_step"] for r in rs) if "ms_per_step" in rs[0] else None,
            "encoder_ms": med(r["encoder_ms"] for r in rs) if "encoder_ms" in rs[0] else None,
            "rss": med(r["peak_rss_mib"] for r in rs),
            "rss_min": min(r["peak_rss_mib"] for r in rs), "rss_max": max(r["peak_rss_mib"] for r in rs),
        }
    return out


def ratio_check(a, b, factor, field="tps", lower_is_better=False):
    """(verdict, text) for a >= factor * b (or a <= factor * b), on medians and on the min-max ranges."""
    if a is None or b is None:
        return "not measured", ""
    lo, hi = ("rss_min", "rss_max") if field == "rss" else ("tps_min", "tps_max")
    r, worst, best = a[field] / b[field], a[lo] / b[hi], a[hi] / b[lo]
    if lower_is_better:
        worst, best = best, worst
        ok, robust = r <= factor, worst <= factor
    else:
        ok, robust = r >= factor, worst >= factor
    verdict = ("met" if robust else "met on medians, not on every round (within noise)") if ok else "not met"
    lo_r, hi_r = sorted((worst, best))
    return verdict, f"{r:.2f}x (over rounds {lo_r:.2f}x-{hi_r:.2f}x; target {'<=' if lower_is_better else '>='} {factor}x)"


def agreements(models):
    out = {}
    for d in sorted(models.iterdir()):
        m = d / "duet_export.json"
        if m.exists():
            out[d.name] = json.loads(m.read_text())
    return out


def bench_agreement(models, out_json):
    """tools/bench/agreement.py over the benchmark-shaped inputs (the target's measure); {} if it fails."""
    cmd = [sys.executable, str(ROOT / "tools/bench/agreement.py"), str(models), "--out", str(out_json),
           "--variants", ",".join(v for v in ONNX_VARIANTS if v != "fp32")]
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=1800)
        return json.loads(Path(out_json).read_text())
    except (subprocess.SubprocessError, OSError, ValueError) as e:
        print(f"warning: agreement check failed: {e}", file=sys.stderr)
        return {}


def targets(s, manifests, concurrency, conc_variants, bench_agree=None):
    get = lambda sys_, v, b, c=None: s.get((sys_, v, b, c))  # noqa: E731
    lines = []
    duet_fp32, ct2_fp32, ct2_int8 = get("duet", "fp32", 1), get("ct2", "fp32", 1), get("ct2", "int8", 1)
    v, t = ratio_check(duet_fp32, ct2_fp32, 1.2)
    lines.append(f"1. duet fp32 b1 vs CTranslate2 float32 b1: **{v}**: {t}" + (
        f"; {duet_fp32['tps']:.1f} vs {ct2_fp32['tps']:.1f} tok/s" if duet_fp32 and ct2_fp32 else ""))
    systems = (bench_agree or {}).get("systems", {})
    cands = []
    for name, m in manifests.items():
        if m.get("quantization") and get("duet", name, 1):
            export_agree = m.get("token_agreement")
            agree = systems.get(f"onnx {name}", {}).get("token_agreement")
            verdict, text = ratio_check(get("duet", name, 1), ct2_int8, 1.3)
            ok_agree = agree is not None and agree >= 0.95
            if not ok_agree and verdict != "not measured":
                verdict = "not met (agreement)"
            forced = (m.get("verification") or {}).get("teacher_forced_agreement")
            detail = (f"token agreement {agree} over the {bench_agree.get('inputs')} benchmark inputs"
                      if agree is not None else "token agreement not measured")
            detail += f" (export's own check: {export_agree} over 8 inputs, teacher-forced {forced})"
            cands.append((verdict.startswith("met"), get("duet", name, 1)["tps"], name, verdict, text, detail))
    if cands:
        cands.sort(reverse=True)
        best = cands[0]
        lines.append(f"2. duet quantized b1 vs CTranslate2 int8 b1: **{'met' if best[0] else 'not met'}**: best {best[2]}")
        for _, tps, name, verdict, text, detail in cands:
            lines.append(f"   - {name}: {verdict}: {tps:.1f} vs {ct2_int8['tps'] if ct2_int8 else float('nan'):.1f} tok/s, "
                         f"{text}; {detail}")
        if "ct2-int8" in systems:
            lines.append(f"   - for comparison, CTranslate2 int8's token agreement with the fp32 export on the same inputs: "
                         f"{systems['ct2-int8']['token_agreement']}")
    else:
        lines.append("2. duet quantized b1 vs CTranslate2 int8 b1: **not measured**")
    first = True
    for v in conc_variants:
        one, many = get("duet", v, 1), get("duet", v, 1, concurrency)
        if one is None or many is None:
            continue
        verdict, text = ratio_check(many, one, 4.0)
        lines.append(f"{'3.' if first else '  '} duet {v}: {concurrency} concurrent callers vs one (b1): **{verdict}**: {text}; "
                     f"{many['tps']:.1f} vs {one['tps']:.1f} tok/s")
        first = False
    if first:
        lines.append("3. duet concurrent callers: **not measured**")
    verdict, text = ratio_check(duet_fp32, ct2_fp32, 1.3, field="rss", lower_is_better=True)
    lines.append(f"4. duet fp32 b1 peak RSS vs CTranslate2 float32 b1: **{verdict}**: {text}" + (
        f"; {duet_fp32['rss']:.0f} vs {ct2_fp32['rss']:.0f} MiB" if duet_fp32 and ct2_fp32 else ""))
    return lines


def write_report(path, args, models, configs, rows, errors, started, elapsed, env_note, bench_agree=None):
    s = summarize(rows)
    manifests = agreements(models)
    agree_lines = []
    if bench_agree:
        agree_lines = ["## Greedy agreement with the fp32 export", "",
                       f"`tools/bench/agreement.py`: the benchmark's input and {bench_agree['inputs'] - 1} more random "
                       f"inputs of the same length, {bench_agree['new_tokens']} tokens each (EOS suppressed), greedy; "
                       "agreement per input = tokens before the first divergence / tokens, averaged. ONNX variants in the "
                       "layout duet runs, through ONNX Runtime; CTranslate2 on the same checkpoint.", "",
                       "| system | token agreement | identical sequences | earliest divergence (token) |", "|---|---|---|---|",
                       *[f"| {k} | {v['token_agreement']} | {v['identical']}/{v['inputs']} | {v['first_divergence_min']} |"
                         for k, v in bench_agree["systems"].items()], ""]
    m = machine()
    order = {"duet": 0, "ct2": 1, "ort-loop": 2, "transformers": 3}
    vorder = {v: i for i, v in enumerate(ONNX_VARIANTS)}
    out = ["# duet benchmark results", "",
           f"Generated by `tools/bench/run_bench.py` on {started} ({elapsed / 60:.1f} min, {args.repeats} rounds).", "",
           "## Machine", "",
           f"- CPU: {m['cpu']}; {m['cores']} logical CPUs" + (f" ({m.get('affinity')} usable)" if m.get('affinity') else ""),
           f"- memory: {m.get('memory_gib', '?')} GiB",
           f"- SIMD: {', '.join(m['flags']) or '?'}; AVX-512: {'yes' if 'avx512f' in m['flags'] else 'no'}; "
           f"VNNI: {'yes' if {'avx512_vnni', 'avx_vnni'} & set(m['flags']) else 'no'}",
           f"- kernel: {platform.platform()}", "",
           "## Versions", "", *[f"- {k}: {v}" for k, v in versions().items()], "",
           "## Workload", "",
           "t5-small architecture (60M parameters, random weights; `tools/bench/make_bench_models.py`), "
           f"{next(iter(rows), {}).get('input_tokens', 128)} input tokens (with EOS), exactly {NEW_TOKENS} generated "
           "tokens (EOS suppressed), greedy, 2 intra-op threads, batch = copies of the same input. Each "
           "configuration is a fresh process: load, 1 warmup, median of 3 timed runs; the table gives the "
           f"median over {args.repeats} interleaved rounds and the min-max of tok/s over rounds. ms/step = "
           f"(generate - encoder) / {NEW_TOKENS}. CTranslate2's encoder ms is estimated (a "
           "max_decoding_length=1 call minus one step). Peak RSS = the process's VmHWM.", "",
           "Variants (ONNX, `tools/export_model.py`): " + "; ".join(
               f"{n}: {'optimized ' if mf.get('optimized') else ''}"
               f"{describe_quantization(mf.get('quantization'))}"
               f"{', token agreement ' + str(mf['token_agreement']) if mf.get('token_agreement') is not None else ''}"
               for n, mf in manifests.items()) + ".", "",
           "## Results", "",
           "| system | variant | batch | callers | tok/s median [min-max] | spread | ms/step | encoder ms | peak RSS MiB |",
           "|---|---|---|---|---|---|---|---|---|"]
    for k in sorted(s, key=lambda k: (k[2], k[3] or 1, order.get(k[0], 9), vorder.get(k[1], 9), k[1])):
        r = s[k]
        out.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3] or 1} | {r['tps']:.1f} [{r['tps_min']:.1f}-{r['tps_max']:.1f}] | "
                   f"{r['spread'] * 100:.0f}% | {fmt(r['ms_per_step'], 2)} | {fmt(r['encoder_ms'], 1)} | {r['rss']:.0f} |")
    noisy = [f"{k[0]} {k[1]} b{k[2]}" + (f" x{k[3]}" if k[3] else "") for k, r in s.items() if r["spread"] > NOISE]
    spreads = sorted(r["spread"] for r in s.values())
    out += ["", *agree_lines, "## Targets (issue: faster than CTranslate2 on this CPU)", "", *targets(
        s, manifests, args.concurrency, args.concurrency_variants.split(","), bench_agree), "",
        "\"met\" = on medians and for every pairing of rounds (the worse end of both ranges); \"within noise\" "
        "= met on medians only. Token agreement (the target's measure): the table above, on benchmark-shaped "
        "inputs. The export's own check (duet_export.json) uses 8 general inputs of 12 to 96 tokens; "
        "teacher-forced: argmax agreement at every position given the fp32 sequence.", "",
        "## Noise", "",
        (f"Spread (max-min)/median of tok/s over rounds: median {statistics.median(spreads) * 100:.0f}%, "
         f"largest {spreads[-1] * 100:.0f}%." if spreads else "No results.") + " This machine is noisy: "
        f"differences under {NOISE * 100:.0f}% are treated as noise. "
        + (f"Above {NOISE * 100:.0f}%: {', '.join(noisy)}." if noisy else f"No configuration spread over {NOISE * 100:.0f}%."),
        ""]
    if errors:
        out += ["## Failed runs", "", *[f"- {e}" for e in errors], ""]
    out += ["## Commands", "", "```",
            "# models (once): " + " ".join([sys.executable, "tools/bench/make_bench_models.py", str(args.models)]),
            " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
            f"# {env_note}",
            "# each configuration (one process each, round-robin):",
            *[" ".join(shlex.quote(x) for x in c["cmd"]) for c in configs], "```", "",
            "Raw lines (one per process, with `round`): `results.jsonl` next to this file.", ""]
    # Sections other benchmarks keep in the same file (search, summarizer, serving, workloads, ...) stay.
    old = Path(path).read_text() if Path(path).exists() else ""
    for m in re.finditer(r"<!-- ([a-z0-9-]+):start -->.*?<!-- \1:end -->", old, re.S):
        out += [m.group(0), ""]
    Path(path).write_text("\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="directory made by make_bench_models.py")
    ap.add_argument("--duet", help="the duet CLI, run as `duet bench` ('none': leave duet out)")
    ap.add_argument("--allow-missing-duet", action="store_true", help="leave duet out if --duet does not exist")
    ap.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    ap.add_argument("--systems", default="duet,ct2,ort-loop,transformers")
    ap.add_argument("--variants", default=",".join(ONNX_VARIANTS), help="ONNX variants (duet, ort-loop)")
    ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    ap.add_argument("--concurrency", type=int, default=8, help="duet's concurrent callers (1: skip)")
    ap.add_argument("--concurrency-variants", default=",".join(ONNX_VARIANTS))
    ap.add_argument("--duet-option", action="append", default=[], metavar="KEY=VALUE", help="passed as --option")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per process")
    args = ap.parse_args()

    models = Path(args.models).resolve()
    input_file = models / "input.txt"
    if not input_file.exists():
        sys.exit(f"{input_file} missing: run tools/bench/make_bench_models.py {args.models} first")
    if args.duet in (None, "none", ""):
        args.duet = None
    elif not Path(args.duet).exists():
        if not args.allow_missing_duet:
            sys.exit(f"{args.duet} not found (build it, or pass --duet none / --allow-missing-duet)")
        print(f"warning: {args.duet} not found: duet left out", file=sys.stderr)
        args.duet = None
    else:
        args.duet = str(Path(args.duet).resolve())
    env = dict(os.environ)
    if "DUET_ORT_LIBRARY" not in env:
        import onnxruntime

        libs = sorted(glob.glob(str(Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so*")))
        if libs:
            env["DUET_ORT_LIBRARY"] = libs[0]
        env_note = f"DUET_ORT_LIBRARY={env.get('DUET_ORT_LIBRARY', '(unset)')} (the onnxruntime Python package's)"
    else:
        env_note = f"DUET_ORT_LIBRARY={env['DUET_ORT_LIBRARY']}"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")

    configs = configurations(args, models, input_file)
    if not configs:
        sys.exit("nothing to run")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.parent / "results.jsonl"
    raw.write_text("")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0, rows, errors = time.perf_counter(), [], []
    n = len(configs)
    for rnd in range(args.repeats):
        for i in range(n):
            c = configs[(i + rnd) % n]
            label = f"{c['system']} {c['variant']} b{c['batch']}" + (f" x{c['concurrency']}" if c["concurrency"] else "")
            res, err = run_one(c, env, args.timeout)
            if err:
                errors.append(f"round {rnd + 1}, {label}: {err}")
                print(f"[{rnd + 1}/{args.repeats} {i + 1}/{n}] {label}: FAILED {err[:300]}", file=sys.stderr, flush=True)
                continue
            res.update({"system": c["system"], "variant": c["variant"], "batch": c["batch"], "round": rnd + 1})
            if c["concurrency"]:
                res["concurrency"] = c["concurrency"]
            else:
                res.pop("concurrency", None)
            rows.append(res)
            with raw.open("a") as f:
                f.write(json.dumps(res) + "\n")
            print(f"[{rnd + 1}/{args.repeats} {i + 1}/{n}] {label}: {res['tokens_per_s']:.1f} tok/s, "
                  f"{fmt(res.get('ms_per_step'), 2)} ms/step, {res['peak_rss_mib']:.0f} MiB ({res['wall_s']:.0f}s)",
                  file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0
    print("greedy agreement with the fp32 export (tools/bench/agreement.py) ...", file=sys.stderr, flush=True)
    bench_agree = bench_agreement(models, Path(out).parent / "agreement.json")
    write_report(out, args, models, configs, rows, errors, started, elapsed, env_note, bench_agree)
    print(f"wrote {out} and {raw} ({elapsed / 60:.1f} min)", file=sys.stderr)
    return 1 if errors and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
