#!/usr/bin/env bash
# Tests duet_translate in the SQLite extension with Debian's sqlite3 CLI:
#   run_translate_test.sh EXTENSION_DIR
# Every translation golden (tests/fixtures/translation_goldens.json: the Hugging Face recipe of
# NLLB-200, mBART-50 and multilingual Marian) must come back byte for byte from SQL; bad codes and
# a model that does not translate are SQL errors with duet's status.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 EXTENSION_DIR" >&2; exit 2; }
ext_dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
SQLITE3=${SQLITE3:-sqlite3}
failures=0
sql_quote() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }
sql() { (cd "$ext_dir" && "$SQLITE3" -batch :memory: -cmd ".load ./duet_sqlite" "$@"); }
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# One line per golden: model, text, to, from, json params, translation, split by \x1f (a tab
# would merge an empty `from` with its neighbours: read collapses white-space separators)
goldens=$(python3 - "$root/tests/fixtures/translation_goldens.json" <<'PY'
import json, sys
for g in json.load(open(sys.argv[1]))["translations"]:
    print("\x1f".join([g["model"], g["text"], g["to"], g["from"] or "", json.dumps(g["params"]), g["translation"]]))
PY
)
while IFS=$'\x1f' read -r model text to from params want; do
    open="SELECT 'duet_open gave NULL' WHERE duet_open($(sql_quote "$root/tests/fixtures/$model")) IS NULL;"
    source=NULL
    [ -n "$from" ] && source=$(sql_quote "$from")
    got=$(sql -bail "$open" "SELECT duet_translate($(sql_quote "$text"), $(sql_quote "$to"), $source, $(sql_quote "$params"));" 2>&1) \
        || { fail "$model -> $to: $got"; continue; }
    if [ "$got" = "$want" ]; then echo "ok  $model -> $to"; else fail "$model -> $to: got $got -- want $want"; fi
done <<<"$goldens"

expect_error() {
    local want=$1 out rc
    shift
    set +e
    out=$(sql -bail "$@" 2>&1)
    rc=$?
    set -e
    if [ "$rc" -ge 128 ] || [ "$rc" -eq 0 ] || ! grep -qF -- "$want" <<<"$out"; then
        fail "for: $* -- exit $rc, output: $out -- expected an error mentioning: $want"
    else
        echo "ok  (error) $(grep -F -- "$want" <<<"$out" | head -n 1 | cut -c1-120)"
    fi
}
nllb="SELECT 1 WHERE duet_open($(sql_quote "$root/tests/fixtures/nllb-tiny")) IS NULL;"
expect_error "DUET_STATUS_UNKNOWN_LANGUAGE: unknown language \`xx_Nope\`" "$nllb" "SELECT duet_translate('Hi.', 'xx_Nope');"
expect_error "DUET_STATUS_INVALID_ARGUMENT" "$nllb" "SELECT duet_translate('Hi.', NULL);"
expect_error "DUET_STATUS_UNSUPPORTED" "SELECT 1 WHERE duet_open($(sql_quote "$root/tests/fixtures/bart-tiny")) IS NULL;" \
    "SELECT duet_translate('Hi.', 'fr');"
expect_error "wrong number of arguments" "$nllb" "SELECT duet_translate('Hi.');"
out=$(sql -bail "$nllb" "SELECT duet_translate(NULL, 'fr') IS NULL, json_array_length(duet_open($(sql_quote "$root/tests/fixtures/nllb-tiny")), '\$.translation.languages');")
[ "$out" = "1|202" ] && echo "ok  NULL text gives NULL; duet_open's info lists 202 languages" || fail "got $out"

[ "$failures" -eq 0 ] || { echo "duet_translate in SQLite: $failures check(s) failed" >&2; exit 1; }
echo "duet_translate in SQLite: ok"
