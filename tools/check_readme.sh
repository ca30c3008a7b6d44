#!/usr/bin/env bash
# Runs every command of the README's Quickstart CLI block (the first ```sh block after
# "## Quickstart"), in order, from the repository root; any failure fails the check. Run after
# the build and `make embedder` (make test does).
set -euo pipefail
cd "$(dirname "$0")/.."
block=$(awk '/^## Quickstart/{q=1} q && /^```sh/{on=1; next} on && /^```/{exit} on' README.md)
[ -n "$block" ] || { echo "README.md: no sh block under ## Quickstart" >&2; exit 1; }
rm -f target/packages.idx  # the quickstart builds it afresh, as for a new user
n=0
while IFS= read -r line; do
    [ -z "$line" ] && continue
    n=$((n + 1))
    echo "README \$ $line"
    if ! bash -o pipefail -c "$line" >/tmp/duet-readme-$$.out 2>&1; then
        cat /tmp/duet-readme-$$.out >&2
        echo "README quickstart: command $n failed: $line" >&2
        rm -f /tmp/duet-readme-$$.out
        exit 1
    fi
    head -c 300 /tmp/duet-readme-$$.out; echo
done <<<"$block"
rm -f /tmp/duet-readme-$$.out
echo "README quickstart: $n commands ran"

# The server block (the first ```sh block after "## Serving over HTTP") runs as one script: it
# starts `duet serve` in the background; no command may fail and no answer may be an error.
block=$(awk '/^## Serving over HTTP/{q=1} q && /^```sh/{on=1; next} on && /^```/{exit} on' README.md)
[ -n "$block" ] || { echo "README.md: no sh block under ## Serving over HTTP" >&2; exit 1; }
echo "README (server) \$ $block"
# Output to a file, not a pipe (a server left running would hold a pipe open); whatever happens,
# the background server is stopped when the block ends.
log=$(mktemp)
if ! timeout 300 bash -e -o pipefail -c "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT; $block" >"$log" 2>&1 \
    || grep -q '"error"' "$log"; then
    cat "$log" >&2
    rm -f "$log"
    echo "README server block failed" >&2
    exit 1
fi
head -c 1500 "$log"; echo
rm -f "$log"
echo "README server block ran"
