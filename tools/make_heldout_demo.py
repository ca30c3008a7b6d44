#!/usr/bin/env python3
"""examples/data/heldout-descriptions.tsv: package descriptions the bundled summarizer never saw in
training (the held-out "test" split of tools/debian_data.py), one per line as
PACKAGE<TAB>SYNOPSIS<TAB>DESCRIPTION (whitespace collapsed). `make demo` summarizes each and prints the
package's own synopsis beside it. A seeded sample of well-formed ones (60 to 120 words), not picked by
how well the model does on them.

    python3 tools/make_heldout_demo.py [--n 6] > examples/data/heldout-descriptions.tsv
"""
import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debian_data  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    splits, _ = debian_data.load_splits()
    pool = [r for r in splits["test"] if 60 <= len(r[2].split()) <= 120 and "\t" not in r[1] + r[2]]
    for pkg, syn, desc in random.Random(args.seed).sample(pool, args.n):
        print(f"{pkg}\t{syn}\t{debian_data.source_text(desc)}")


if __name__ == "__main__":
    main()
