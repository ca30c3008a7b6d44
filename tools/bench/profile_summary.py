#!/usr/bin/env python3
"""Where the time of a decoder step goes: sums ONNX Runtime profile events by operator type.

    duet bench --model DIR --input-file F --batch 1 --runs 1 --option profiling_prefix=/tmp/prof
    python tools/bench/profile_summary.py /tmp/prof_decoder_model_merged*.json [--steps N]

Prints a Markdown table: operator type, total ms, share, ms per step (N = decoder runs counted
from the profile's model_run events unless given).
"""
import argparse
import collections
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", help="an ONNX Runtime profile JSON file")
    ap.add_argument("--steps", type=int, help="decoder runs to divide by (default: model_run events)")
    args = ap.parse_args()
    events = json.load(open(args.profile))
    by_op = collections.Counter()
    runs = 0
    run_us = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs += 1
            run_us += e.get("dur", 0)
        elif e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            # An If's time is that of its branch, whose nodes are listed too.
            if op != "If":
                by_op[op] += e.get("dur", 0)
    steps = args.steps or max(runs, 1)
    total = sum(by_op.values()) or 1
    print(f"{runs} runs, {run_us / 1000 / max(runs, 1):.3f} ms per run on average, "
          f"{total / 1000 / steps:.3f} ms of kernels per run\n")
    print("| operator | total ms | share | ms per run |")
    print("|---|---|---|---|")
    for op, us in by_op.most_common():
        print(f"| {op} | {us / 1000:.1f} | {100 * us / total:.1f}% | {us / 1000 / steps:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
