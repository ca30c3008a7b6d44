"""Shared by the benchmark runners: arguments, input, timing, peak RSS, the JSON line.

Every runner measures inside its own fresh process: load, 1 warmup generation, then `--runs` (3) timed
generations of exactly --new-tokens tokens for a batch of --batch copies of the input; it prints one
JSON line with the medians. tokens_per_s = batch * new_tokens / total generate time; ms_per_step =
(total - encoder) / new_tokens; peak_rss_mib = the process's peak resident set (VmHWM).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
THREADS = 2


def parse_args(doc, default_variant=None):
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--input-file", required=True, help="text file: the input (one line)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--beams", type=int, default=1, help="beam search width (default 1: greedy); the best beam is timed")
    ap.add_argument("--variant", default=default_variant, help="label (default: from the model dir name)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs after one warmup (default 3)")
    ap.add_argument("--threads", type=int, default=THREADS)
    return ap


def read_input(args):
    return Path(args.input_file).read_text().strip()


def tokenize(tokenizer_json, text):
    """(ids, pieces) of text with the tokenizer's post-processing (EOS appended)."""
    from tokenizers import Tokenizer

    enc = Tokenizer.from_file(str(tokenizer_json)).encode(text)
    return enc.ids, enc.tokens


def peak_rss_mib():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(once, runs):
    """once() -> (encoder seconds, total seconds, new tokens per row). One warmup, then runs timed."""
    once()
    res = [once() for _ in range(runs)]
    return res


def report(system, variant, batch, new_tokens, input_tokens, results, beams=1, **extra):
    enc = statistics.median(r[0] for r in results)
    total = statistics.median(r[1] for r in results)
    for r in results:
        if r[2] != new_tokens:
            sys.exit(f"{system}: generated {r[2]} tokens, not {new_tokens}")
    line = {
        "system": system, "variant": variant, "batch": batch,
        "tokens_per_s": round(batch * new_tokens / total, 2),
        "ms_per_step": round((total - enc) * 1000 / new_tokens, 3),
        "encoder_ms": round(enc * 1000, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "new_tokens": new_tokens, "input_tokens": input_tokens,
        "runs_s": [round(r[1], 4) for r in results],
        **extra,
    }
    if beams > 1:
        line["beams"] = beams
    print(json.dumps(line), flush=True)


def now():
    return time.perf_counter()
