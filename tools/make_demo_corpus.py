#!/usr/bin/env python3
"""The demo's search corpus: a few dozen well-known packages' descriptions from Debian bookworm's
Translation-en (`apt-get -o Acquire::Languages=en update` brings it), one package a line:
"PACKAGE: LONG DESCRIPTION" (the synopsis left out, so that a query has to mean what it asks).
Output committed as examples/data/debian-packages.txt (make demo indexes and searches it).

    python3 tools/make_demo_corpus.py > examples/data/debian-packages.txt
"""
import glob
import subprocess
import sys

PACKAGES = """vim nano emacs-nox git curl wget rsync openssh-client htop ncdu tmux screen sqlite3 python3
gcc make cmake imagemagick gimp inkscape libpng16-16 ffmpeg vlc firefox-esr thunderbird postgresql nginx
apache2 redis-server chrony tcpdump wireshark gnupg zip xz-utils zstd jq graphviz pandoc fonts-dejavu-core
fortune-mod cowsay tesseract-ocr espeak-ng sox aspell-en hunspell-de-de mecab ripgrep fd-find tree
""".split()


def translation_file():
    found = sorted(glob.glob("/var/lib/apt/lists/*_debian_dists_bookworm_main_i18n_Translation-en*"))
    if not found:
        sys.exit("no bookworm Translation-en: run `apt-get -o Acquire::Languages=en update` first")
    return found[0]


def records(text):
    pkg, synopsis, lines = None, None, []
    for line in text.splitlines() + [""]:
        if line.startswith("Package: "):
            pkg = line[9:].strip()
        elif line.startswith("Description-en: "):
            synopsis, lines = line[16:].strip(), []
        elif line.startswith(" ") and synopsis is not None:
            lines.append("" if line.strip() == "." else line.strip())
        elif not line.strip() and pkg and synopsis is not None:
            paragraphs = "\n".join(lines).split("\n\n")
            yield pkg, synopsis, "\n".join(" ".join(p.split("\n")) for p in paragraphs).strip()
            pkg, synopsis, lines = None, None, []


def main():
    text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", translation_file()], check=True, capture_output=True, text=True).stdout
    wanted = {p: None for p in PACKAGES}
    for pkg, synopsis, description in records(text):
        if pkg in wanted and wanted[pkg] is None:
            wanted[pkg] = {"package": pkg, "synopsis": synopsis, "description": description}
    for pkg, rec in wanted.items():
        if rec is None:
            print(f"not in this suite: {pkg}", file=sys.stderr)
        else:
            print(f"{pkg}: {' '.join(rec['description'].split())}")


if __name__ == "__main__":
    main()
