#!/usr/bin/env bash
# Tests the duet SQLite extension with Debian's sqlite3 CLI:
#   run_test.sh EXTENSION_DIR RERANK_ORDER MODEL_DIR
# EXTENSION_DIR holds duet_sqlite.so (loaded as the issue says: `.load ./duet_sqlite`);
# RERANK_ORDER is the built rerank_order.c. Runs test.sql (FTS5 table, keyword query, hits
# reranked by duet_rerank) and has rerank_order check its answers against the C API, then checks
# that misuse is a SQL error (non-zero exit, the message on stderr), never a crash.
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 EXTENSION_DIR RERANK_ORDER MODEL_DIR" >&2
    exit 2
fi
ext_dir=$(cd "$1" && pwd)
oracle=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
model=$(cd "$3" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
SQLITE3=${SQLITE3:-sqlite3}
query='Where did scientists find a new frog?'
failures=0

[ -f "$ext_dir/duet_sqlite.so" ] || { echo "no $ext_dir/duet_sqlite.so" >&2; exit 2; }

# A SQL string literal, for .parameter set.
sql_quote() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }

# sqlite3 on a fresh in-memory database with the extension loaded; arguments are SQL or dot
# commands, run in order.
sql() { (cd "$ext_dir" && "$SQLITE3" -batch :memory: -cmd ".load ./duet_sqlite" "$@"); }

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# run_sql SQL... : sets the caller's `out` (stdout and stderr) and `rc`, whatever the exit status.
run_sql() {
    set +e
    out=$(sql -bail "$@" 2>&1)
    rc=$?
    set -e
}

# expect_error WANT SQL... : sqlite3 must exit with an error (not a crash) mentioning WANT.
expect_error() {
    local want=$1 out rc
    shift
    run_sql "$@"
    if [ "$rc" -ge 128 ]; then
        fail "sqlite3 crashed (exit $rc) on: $* -- $out"
    elif [ "$rc" -eq 0 ]; then
        fail "no error for: $* -- output: $out"
    elif ! grep -qF -- "$want" <<<"$out"; then
        fail "error for: $* -- got: $out -- expected it to mention: $want"
    else
        echo "ok  (error) $(grep -F -- "$want" <<<"$out" | head -n 1)"
    fi
}

# expect_output WANT SQL... : sqlite3 must succeed and print exactly WANT.
expect_output() {
    local want=$1 out rc
    shift
    run_sql "$@"
    if [ "$rc" -ne 0 ] || [ "$out" != "$want" ]; then
        fail "for: $* -- exit $rc, output: $out -- expected: $want"
    else
        echo "ok  $want"
    fi
}

# Opens the model, printing nothing (no rows unless duet_open gave NULL, which it never does).
open_sql="SELECT 'duet_open gave NULL' WHERE duet_open($(sql_quote "$model")) IS NULL;"

echo "== test.sql: FTS5 keyword query, hits reranked by duet_rerank, checked against the C API"
out_file=$(mktemp)
trap 'rm -f "$out_file"' EXIT
sql -bail \
    -cmd ".parameter set @model_dir \"$(sql_quote "$model")\"" \
    -cmd ".parameter set @query \"$(sql_quote "$query")\"" \
    <"$here/test.sql" >"$out_file"
"$oracle" "$model" "$query" <"$out_file" || fail "rerank_order: the SQL answers differ from the C API"

echo "== results"
expect_output "split" \
    "SELECT json_extract(duet_open($(sql_quote "$model"), '{\"layout\": \"split\", \"intra_threads\": 1}'), '\$.layout');"
expect_output "1|1|1|1" "$open_sql" \
    "SELECT duet_generate(NULL) IS NULL, duet_rerank('q', NULL) IS NULL, duet_embed(NULL) IS NULL, duet_summarize(NULL) IS NULL;"
expect_output "text|real|blob|text" "$open_sql" \
    "SELECT typeof(duet_generate('Hello', '{\"max_new_tokens\": 4}')), typeof(duet_rerank('frog', 'a green frog')), typeof(duet_embed('frog')), typeof(duet_summarize('The river flooded the town after the storm. Everyone was safe.', '{\"summary_length\": \"short\"}'));"
expect_output "1" "$open_sql" \
    "SELECT length(duet_generate('Hello', '{\"max_new_tokens\": 2}')) <= length(duet_generate('Hello', '{\"max_new_tokens\": 12}'));"

echo "== errors are SQL errors"
for f in "duet_rerank('q', 't')" "duet_generate('t')" "duet_summarize('t')" "duet_embed('t')"; do
    expect_error "duet: call duet_open(model_dir) first" "SELECT $f;"
done
expect_error "duet: DUET_STATUS_MODEL_FILE_MISSING" "SELECT duet_open('/nonexistent/model');"
expect_error "duet: duet_open needs a model directory" "SELECT duet_open(NULL);"
expect_error "duet: DUET_STATUS_UNKNOWN_PARAM" "SELECT duet_open($(sql_quote "$model"), '{\"no_such_option\": 1}');"
expect_error "duet: json_params: malformed JSON" "$open_sql" "SELECT duet_generate('x', 'not json');"
expect_error "duet: json_params must be a JSON object" "$open_sql" "SELECT duet_generate('x', '[1, 2]');"
expect_error "duet: json_params must be a JSON object" "$open_sql" "SELECT duet_generate('x', '[]');"
expect_error "duet: json_params: \`a\` cannot be an object" "$open_sql" "SELECT duet_generate('x', '{\"a\": {}}');"
expect_error "duet: DUET_STATUS_UNKNOWN_PARAM: unknown parameter \`no_such_key\`" "$open_sql" "SELECT duet_generate('x', '{\"no_such_key\": 1}');"
expect_error "duet: DUET_STATUS_INVALID_PARAM" "$open_sql" "SELECT duet_generate('x', '{\"num_beams\": 0}');"
expect_error "duet: DUET_STATUS_INVALID_ARGUMENT" "$open_sql" "SELECT duet_rerank('   ', 'a passage');"
expect_error "duet: DUET_STATUS_INVALID_ARGUMENT" "$open_sql" "SELECT duet_summarize('   ');"
expect_error "duet: DUET_STATUS_INVALID_UTF8" "$open_sql" "SELECT duet_summarize(CAST(x'fffe41' AS TEXT));"
expect_error "duet: \`text\` contains a NUL byte" "$open_sql" "SELECT duet_embed(x'610062');"
expect_error "wrong number of arguments" "$open_sql" "SELECT duet_rerank('only a query');"
expect_error "unsafe use of duet_open()" \
    "CREATE VIEW v AS SELECT duet_open($(sql_quote "$model")) AS info;" "SELECT * FROM v;"

echo "== the model belongs to the connection"
# A failed duet_open keeps the model that was open (SQL on stdin without -bail goes on after
# an error; SQL given as arguments would stop).
set +e
out=$(sql -cmd "$open_sql" 2>&1 <<'SQL'
SELECT duet_open('/nonexistent/model');
SELECT typeof(duet_rerank('q', 't'));
SQL
)
set -e
grep -qx "real" <<<"$out" && grep -qF "DUET_STATUS_MODEL_FILE_MISSING" <<<"$out" \
    && echo "ok  a failed duet_open keeps the open model" \
    || fail "a failed duet_open must keep the open model: $out"
# Another connection (.open) has no model until it opens one; closing the first frees its model.
expect_error "duet: call duet_open(model_dir) first" "$open_sql" ".open :memory:" ".load ./duet_sqlite" \
    "SELECT duet_rerank('q', 't');"
# Loading the extension again on the same connection starts afresh (the old model is freed).
expect_error "duet: call duet_open(model_dir) first" "$open_sql" ".load ./duet_sqlite" "SELECT duet_rerank('q', 't');"

if [ "$failures" -ne 0 ]; then
    echo "sqlite extension: $failures check(s) failed" >&2
    exit 1
fi
echo "sqlite extension: ok"
