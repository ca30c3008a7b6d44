"""Debian bookworm main's English package descriptions (apt's Translation-en), shared by the search
benchmark and the summarizer's training and quality benchmark.

Each record is (package, synopsis, long description). `clean_records` deduplicates by long description
and by synopsis (first kept) and drops long descriptions under MIN_LONG characters or equal to their
synopsis. `split_of(package)` assigns a package to "train", "valid" or "test" by a hash of its *source*
package (from apt's Packages file), so that binary packages built from one source (libfoo1, libfoo-dev,
foo-doc: near-twin descriptions) always fall on the same side.
"""
import glob
import gzip
import hashlib
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

APT_LISTS = "/var/lib/apt/lists"
SUITE = "bookworm"
TRANSLATION_GLOB = f"*_dists_{SUITE}_main_i18n_Translation-en*"
PACKAGES_GLOB = f"*_dists_{SUITE}_main_binary-*_Packages*"
MIN_LONG = 40
# Per mille of source packages in each held-out split (the rest is train).
TEST_PER_MILLE = 40
VALID_PER_MILLE = 15


def log(msg):
    print(f"[debian-data] {msg}", file=sys.stderr, flush=True)


def _find(pattern, lists=APT_LISTS):
    hits = [p for p in sorted(glob.glob(os.path.join(lists, pattern))) if os.path.isfile(p)]
    return hits[0] if hits else None


def find_translations(lists=APT_LISTS):
    """The bookworm main Translation-en file in apt's lists (not -updates/-security), or None."""
    return _find(TRANSLATION_GLOB, lists)


def ensure_translations(lists=APT_LISTS):
    path = find_translations(lists)
    if path is None:
        log("Translation-en missing: apt-get -o Acquire::Languages=en update")
        subprocess.run(["apt-get", "-o", "Acquire::Languages=en", "update"], check=True, stdout=subprocess.DEVNULL)
        path = find_translations(lists)
    if path is None:
        sys.exit(f"no {TRANSLATION_GLOB} in {lists} after apt-get update")
    return path


def read_translations(path):
    """The decompressed text of an apt list file (plain, .gz, .xz, .lz4...)."""
    helper = "/usr/lib/apt/apt-helper"
    if os.path.exists(helper):
        p = subprocess.run([helper, "cat-file", path], capture_output=True)
        if p.returncode == 0:
            return p.stdout.decode("utf-8", "replace")
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(Path(path).suffix, open)
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def parse_records(text):
    """[(package, synopsis, long description)] from Translation-en text. The long description is the
    indented lines, each stripped, joined with spaces within a paragraph; " ." starts a new paragraph
    (a newline)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        package = synopsis = None
        paragraphs, current, in_desc = [], [], False
        for line in block.split("\n"):
            if line.startswith(" "):
                if in_desc:
                    if line.strip() == ".":
                        paragraphs.append(" ".join(current))
                        current = []
                    else:
                        current.append(line.strip())
                continue
            key, _, value = line.partition(":")
            in_desc = key == "Description-en"
            if key == "Package":
                package = value.strip()
            elif in_desc:
                synopsis = value.strip()
        if package and synopsis is not None:
            paragraphs.append(" ".join(current))
            out.append((package, synopsis, "\n".join(p for p in paragraphs if p).strip()))
    return out


def _norm(s):
    return " ".join(s.casefold().split()).rstrip(".")


def clean_records(records, min_long=MIN_LONG):
    """Dedup by long description, then by synopsis (first kept); drop short long descriptions and those
    equal to their synopsis. Returns (records, counts)."""
    seen_long, seen_syn, out = set(), set(), []
    counts = {"parsed": len(records), "duplicate_long": 0, "short_long": 0, "long_is_synopsis": 0,
              "duplicate_synopsis": 0}
    for pkg, syn, long in records:
        if long in seen_long:
            counts["duplicate_long"] += 1
            continue
        seen_long.add(long)
        if len(long) < min_long:
            counts["short_long"] += 1
        elif _norm(long) == _norm(syn):
            counts["long_is_synopsis"] += 1
        elif _norm(syn) in seen_syn:
            counts["duplicate_synopsis"] += 1
        else:
            seen_syn.add(_norm(syn))
            out.append((pkg, syn, long))
    counts["kept"] = len(out)
    return out, counts


def source_packages(lists=APT_LISTS):
    """{binary package: source package} from the suite's Packages file(s). A stanza without a Source
    field is its own source; "Source: foo (1.2-3)" is foo."""
    mapping = {}
    for path in sorted(glob.glob(os.path.join(lists, PACKAGES_GLOB))):
        if not os.path.isfile(path):
            continue
        package = source = None
        for line in read_translations(path).split("\n") + [""]:
            if line.startswith("Package: "):
                package = line[9:].strip()
            elif line.startswith("Source: "):
                source = line[8:].split()[0]
            elif not line.strip():
                if package:
                    mapping.setdefault(package, source or package)
                package = source = None
    return mapping


def source_text(description):
    """A long description as a model's input: its paragraphs and lines joined by single spaces."""
    return " ".join(description.split())


def split_of_source(source):
    bucket = int.from_bytes(hashlib.sha256(source.encode()).digest()[:4], "big") % 1000
    if bucket < TEST_PER_MILLE:
        return "test"
    if bucket < TEST_PER_MILLE + VALID_PER_MILLE:
        return "valid"
    return "train"


_SOURCES = None


def split_of(package):
    """"train", "valid" or "test" for a binary package, by its source package (the package itself when
    the Packages file does not list it)."""
    global _SOURCES
    if _SOURCES is None:
        _SOURCES = source_packages()
    return split_of_source(_SOURCES.get(package, package))


def load_splits():
    """{"train"|"valid"|"test": [(package, synopsis, long description)]} and the cleaning counts."""
    records, counts = clean_records(parse_records(read_translations(ensure_translations())))
    out = {"train": [], "valid": [], "test": []}
    for rec in records:
        out[split_of(rec[0])].append(rec)
    counts.update({f"{k}_pairs": len(v) for k, v in out.items()})
    return out, counts


if __name__ == "__main__":
    splits, counts = load_splits()
    print(counts)
    import statistics
    for name, recs in splits.items():
        print(name, len(recs), "long chars median", statistics.median(len(r[2]) for r in recs),
              "synopsis words median", statistics.median(len(r[1].split()) for r in recs))
