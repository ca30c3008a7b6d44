#!/bin/sh
# make demo's summarizer part: each held-out package description (PACKAGE<TAB>SYNOPSIS<TAB>TEXT per
# line) summarized by MODEL, printed beside the package's own synopsis.
#   examples/summarize_demo.sh DUET MODEL examples/data/heldout-descriptions.tsv
set -eu
duet=$1 model=$2 file=$3
tab=$(printf '\t')
while IFS="$tab" read -r pkg synopsis text; do
  printf -- '-- %s: %.100s...\n' "$pkg" "$text"
  printf '   Debian says: %s\n' "$synopsis"
  printf '   duet says:   %s\n' "$("$duet" generate --model "$model" -- "$text")"
done < "$file"
