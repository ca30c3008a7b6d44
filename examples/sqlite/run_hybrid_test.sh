#!/usr/bin/env bash
# Tests hybrid search in the duet SQLite extension (hybrid.sql) on the bundled embedder and real
# Debian package descriptions:
#   run_hybrid_test.sh EXTENSION_DIR EMBEDDER_DIR RERANKER_DIR CORPUS DUET_CLI
# Checks: the embedding top 5 equal `duet search --mode vector` (the same vectors and distance
# through the C ABI and the CLI), the hybrid query's best hit for queries of known answer, the
# reranked rows, the distance functions' values and errors, and named-model errors.
set -euo pipefail
if [ $# -ne 5 ]; then
    echo "usage: $0 EXTENSION_DIR EMBEDDER_DIR RERANKER_DIR CORPUS DUET_CLI" >&2
    exit 2
fi
ext_dir=$(cd "$1" && pwd)
embedder=$(cd "$2" && pwd)
reranker=$(cd "$3" && pwd)
corpus=$(cd "$(dirname "$4")" && pwd)/$(basename "$4")
cli=$(cd "$(dirname "$5")" && pwd)/$(basename "$5")
here=$(cd "$(dirname "$0")" && pwd)
SQLITE3=${SQLITE3:-sqlite3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
sql_quote() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }

# The corpus as a table (one document a line, id = line number).
{
    echo "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
    awk '{ gsub(/\047/, "\047\047"); printf "INSERT INTO docs(id, body) VALUES (%d, \047%s\047);\n", NR, $0 }' "$corpus"
} >"$work/corpus.sql"
"$cli" index --model "$embedder" --index "$work/cli.idx" --set truncate_input=true "$corpus" 2>/dev/null

check_query() {
    local query=$1 want=$2
    local fts
    # FTS5 barewords: lower-cased runs of letters and digits (never an AND/OR/NOT operator).
    fts=$(tr -cs 'A-Za-z0-9' '\n' <<<"$query" | tr 'A-Z' 'a-z' | sed '/^$/d' | paste -sd' ' | sed 's/ / OR /g')
    local out
    out=$(cd "$ext_dir" && "$SQLITE3" -batch :memory: -cmd ".load ./duet_sqlite" \
        -cmd ".parameter set @embedder \"$(sql_quote "$embedder")\"" \
        -cmd ".parameter set @reranker \"$(sql_quote "$reranker")\"" \
        -cmd ".parameter set @query \"$(sql_quote "$query")\"" \
        -cmd ".parameter set @fts_query \"$(sql_quote "$fts")\"" \
        -cmd ".read $work/corpus.sql" <"$here/hybrid.sql" 2>&1) || { fail "hybrid.sql failed for '$query': $out"; return; }
    grep -qx "embedder|embedding" <<<"$out" || fail "the embedder did not open as an embedding model: $out"
    local sql_vector cli_vector
    sql_vector=$(grep '^vector|' <<<"$out" | cut -d'|' -f2 | paste -sd,)
    cli_vector=$("$cli" search --model "$embedder" --index "$work/cli.idx" --query "$query" --k 5 | cut -f1 | paste -sd,)
    [ "$sql_vector" = "$cli_vector" ] && echo "ok  vector top 5 for '$query' = duet search: $sql_vector" \
        || fail "vector top 5 for '$query': SQL $sql_vector, duet search $cli_vector"
    local best
    best=$(grep '^hybrid|' <<<"$out" | head -n 1 | cut -d'|' -f3)
    [ "$best" = "$want" ] && echo "ok  hybrid best hit for '$query': $best" || fail "hybrid best hit for '$query': $best, expected $want"
    [ "$(grep -c '^reranked|' <<<"$out")" -eq 5 ] && echo "ok  5 hits reranked" || fail "reranked rows: $out"
}

check_query "capture and inspect network packets" tcpdump
check_query "see which folders use the most disk space" ncdu
check_query "recognize text in scanned images" tesseract-ocr
check_query "convert documents between markup formats" pandoc

expect() {
    local want=$1
    shift
    local out rc
    set +e
    out=$(cd "$ext_dir" && "$SQLITE3" -batch -bail :memory: -cmd ".load ./duet_sqlite" "$@" 2>&1)
    rc=$?
    set -e
    if [ "$rc" -ge 128 ]; then fail "sqlite3 crashed on: $*"; elif grep -qF -- "$want" <<<"$out"; then echo "ok  $want"; else fail "for: $* -- got: $out -- expected: $want"; fi
}
expect "0.0|1.0" "SELECT printf('%.1f', duet_distance_cosine(x'0000803f00000000', x'0000803f00000000')) || '|' || printf('%.1f', duet_distance_cosine(x'0000803f00000000', x'000000000000803f'));"
expect "5.0" "SELECT printf('%.1f', duet_distance_l2(x'0000404000000000', x'0000000000008040'));"
expect "1" "SELECT duet_distance_l2(NULL, x'00000000') IS NULL;"
expect "both must hold the same number of float32s" "SELECT duet_distance_l2(x'0000803f', x'0000803f00000000');"
expect "vectors must be float32 BLOBs" "SELECT duet_distance_cosine('text', x'0000803f');"
expect "zero vector" "SELECT duet_distance_cosine(x'00000000', x'0000803f');"
expect "no model named \`nope\`" "SELECT duet_embed('x', '{\"model\": \"nope\"}');"
expect "\`model\` must be the name of a registered model" "SELECT duet_embed('x', '{\"model\": 5}');"
expect "duet_register needs a model name" "SELECT duet_register('', $(sql_quote "$embedder"));"
expect "DUET_STATUS_UNSUPPORTED" "SELECT duet_register('e', $(sql_quote "$embedder"));" "SELECT duet_generate('hi', '{\"model\": \"e\"}');"
expect "non-deterministic functions prohibited in generated columns" "SELECT duet_open($(sql_quote "$reranker"));" \
    "CREATE TABLE t(a TEXT, b TEXT GENERATED ALWAYS AS (duet_generate(a)));" "INSERT INTO t(a) VALUES ('x');"

if [ "$failures" -ne 0 ]; then
    echo "sqlite hybrid search: $failures check(s) failed" >&2
    exit 1
fi
echo "sqlite hybrid search: ok"
