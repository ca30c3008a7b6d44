/*
 * duet as a SQLite extension, in C over the public header (include/duet.h):
 *
 *   sqlite3 db '.load ./duet_sqlite'
 *   SELECT duet_open('models/flan-t5-small');                 -- the model's info as JSON
 *   SELECT duet_summarize(body) FROM docs;
 *   SELECT duet_generate('translate English to German: Hi', '{"num_beams": 4}');
 *   SELECT duet_embed(body) FROM docs;                         -- BLOB of float32
 *   SELECT rowid FROM docs WHERE docs MATCH 'frog'
 *     ORDER BY duet_rerank('Where was the frog found?', body) DESC;
 *   SELECT duet_register('minilm', 'models/all-MiniLM-L6-v2');   -- a named model
 *   SELECT id FROM docs ORDER BY duet_distance_cosine(vec, duet_embed(:q, '{"model": "minilm"}')) LIMIT 10;
 *
 * Functions
 *   duet_open(model_dir [, json_options])  opens the default model of this connection (replacing
 *                                          the one open before, which stays if opening fails);
 *                                          returns the model's info JSON. Options: `{"layout":
 *                                          "split", "intra_threads": 2, "providers": "cuda,cpu"}`.
 *   duet_register(name, model_dir [, json_options])
 *                                          opens a named model (at most 16 names; the same name
 *                                          again replaces it), like sqlite-lembed's model table.
 *                                          Every function below takes `"model": "name"` in its
 *                                          json_params to use it instead of the default.
 *   duet_summarize(text [, json_params])   the summary (TEXT)
 *   duet_translate(text, to [, from [, json_params]])
 *                                          the translation into language `to` (TEXT): the
 *                                          model's codes (fra_Latn, fr_XX, >>fra<<) or ISO 639
 *                                          (fr); `from` NULL or absent takes the model's default
 *                                          source. duet_open's info lists the languages.
 *   duet_generate(text [, json_params])    the first sequence's text (TEXT)
 *   duet_embed(text [, json_params])       the embedding (pooled and normalised as the model
 *                                          says; L2 for a seq2seq encoder): a BLOB of
 *                                          duet_model_embedding_dim() float32s in native byte
 *                                          order (little-endian on x86-64 and arm64)
 *   duet_rerank(query, text [, json_params]) the relevance of `text` to `query` (REAL, higher is
 *                                          more relevant; duet_rerank with one passage)
 *   duet_distance_cosine(a, b)             1 - cosine similarity of two float32 BLOBs (as
 *   duet_distance_l2(a, b)                 sqlite-vec's vec_distance_cosine / vec_distance_l2,
 *                                          on the same BLOB format); NULL for a NULL argument.
 *                                          Top-k: ORDER BY duet_distance_cosine(vec, :q) LIMIT k.
 *
 * duet_embed, duet_rerank and the distances are SQLITE_DETERMINISTIC (the same model gives the
 * same answer), so they can fill generated columns and indexes, and SQLite computes a call with
 * constant arguments (the query's embedding in a search) once per statement, not once per row.
 * duet_generate and duet_summarize are not (sampling). hybrid.sql shows a hybrid query: FTS5 BM25
 * and embedding similarity fused by reciprocal rank, the top hits reranked.
 *   json_params is a JSON object of generation keys (Hugging Face names):
 *   `{"max_new_tokens": 32, "do_sample": true, "stop_strings": ["###"]}`; null unsets a key.
 *
 * A SQL NULL in place of a text gives NULL, as SQL functions do. Every failure is a SQL error
 * "duet: DUET_STATUS_...: message"; before duet_open the functions fail with "call
 * duet_open(model_dir) first". The model belongs to the connection: it is freed when the
 * connection closes (or by the next duet_open), and other connections must open their own.
 *
 * Build: gcc -shared -fPIC -Iinclude examples/sqlite/duet_sqlite.c -o duet_sqlite.so
 *          -Ltarget/release -lduet -lm -Wl,-rpath,$PWD/target/release
 * `make install` puts it in PREFIX/lib/duet_sqlite.so (rpath $ORIGIN: it finds libduet, and
 * libduet finds ONNX Runtime, beside it with no environment variable).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include "duet.h"

#define MAX_NAMED_MODELS 16
#define MAX_MODEL_NAME 64

/* What one connection holds: its default model and its named ones, shared by every function
   registered on it. */
typedef struct {
    duet_model *model;
    struct {
        char name[MAX_MODEL_NAME + 1];
        duet_model *model;
    } named[MAX_NAMED_MODELS];
    int refs; /* one per registered function; freed when the last is destroyed */
} duet_conn;

static void conn_release(void *p) {
    duet_conn *conn = p;
    if (--conn->refs == 0) {
        duet_model_free(conn->model);
        for (int i = 0; i < MAX_NAMED_MODELS; i++) duet_model_free(conn->named[i].model);
        sqlite3_free(conn);
    }
}

/* The SQL error for the duet call that just failed with `status`. */
static void result_duet_error(sqlite3_context *ctx, duet_status status) {
    const char *message = duet_last_error_message();
    char *text = sqlite3_mprintf("duet: %s: %s", duet_status_name((int32_t)status), message ? message : "");
    if (text) {
        sqlite3_result_error(ctx, text, -1);
        sqlite3_free(text);
    } else {
        sqlite3_result_error_nomem(ctx);
    }
}

static void result_errorf(sqlite3_context *ctx, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    char *text = sqlite3_vmprintf(format, ap);
    va_end(ap);
    if (text) {
        sqlite3_result_error(ctx, text, -1);
        sqlite3_free(text);
    } else {
        sqlite3_result_error_nomem(ctx);
    }
}

/* The model named `name` (NULL: the default) of this connection, or NULL after reporting the
   SQL error. */
static const duet_model *need_model(sqlite3_context *ctx, const char *name) {
    duet_conn *conn = sqlite3_user_data(ctx);
    if (name) {
        for (int i = 0; i < MAX_NAMED_MODELS; i++) {
            if (conn->named[i].model && strcmp(conn->named[i].name, name) == 0) return conn->named[i].model;
        }
        result_errorf(ctx, "duet: no model named `%s`: register it with duet_register(name, model_dir)", name);
        return NULL;
    }
    if (!conn->model) {
        sqlite3_result_error(ctx, "duet: call duet_open(model_dir) first", -1);
        return NULL;
    }
    return conn->model;
}

/*
 * Argument `i` as NUL-terminated UTF-8 (owned by SQLite, valid until the value changes), or NULL:
 * *is_null is set for SQL NULL (the caller returns NULL); otherwise an error has been reported.
 * A value holding a NUL byte (a BLOB) is refused rather than silently cut short.
 */
static const char *text_arg(sqlite3_context *ctx, sqlite3_value **argv, int i, const char *name, int *is_null) {
    *is_null = 0;
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL) {
        *is_null = 1;
        return NULL;
    }
    const char *text = (const char *)sqlite3_value_text(argv[i]);
    if (!text) {
        sqlite3_result_error_nomem(ctx);
        return NULL;
    }
    if ((size_t)sqlite3_value_bytes(argv[i]) != strlen(text)) {
        result_errorf(ctx, "duet: `%s` contains a NUL byte", name);
        return NULL;
    }
    return text;
}

/* Sets one JSON member on params or options: `set_string(target, key, value)` / `unset(key)`. */
typedef duet_status (*set_string_fn)(void *target, const char *key, const char *value);
typedef duet_status (*unset_fn)(void *target, const char *key);

static duet_status params_set_string(void *p, const char *k, const char *v) { return duet_params_set_string(p, k, v); }
static duet_status params_unset(void *p, const char *k) { return duet_params_unset(p, k); }
static duet_status options_set_string(void *o, const char *k, const char *v) { return duet_model_options_set_string(o, k, v); }

/*
 * Applies the JSON object `json` to `target` member by member, with SQLite's own json_each (so
 * no JSON parser here): strings as they are, numbers and true/false as their text, arrays as
 * their JSON text, null as unset. Returns 0, or -1 after reporting the SQL error.
 */
static int apply_json(sqlite3_context *ctx, const char *json, const char *what, void *target, set_string_fn set, unset_fn unset) {
    sqlite3 *db = sqlite3_context_db_handle(ctx);
    sqlite3_stmt *stmt = NULL;
    static const char sql[] =
        "SELECT json_type(?1), key, type, "
        "CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END "
        "FROM json_each(?1)";
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        result_errorf(ctx, "duet: cannot read JSON: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_text(stmt, 1, json, -1, SQLITE_STATIC);
    int failed = 0;
    while (!failed && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *top = (const char *)sqlite3_column_text(stmt, 0);
        const char *key = (const char *)sqlite3_column_text(stmt, 1);
        const char *type = (const char *)sqlite3_column_text(stmt, 2);
        const char *value = (const char *)sqlite3_column_text(stmt, 3);
        duet_status st = DUET_STATUS_OK;
        if (!top || strcmp(top, "object") != 0) {
            result_errorf(ctx, "duet: %s must be a JSON object", what);
            failed = 1;
        } else if (!key || !type) {
            sqlite3_result_error_nomem(ctx);
            failed = 1;
        } else if (set == params_set_string && strcmp(key, "model") == 0) {
            /* the extension's own key: which registered model (model_name_arg reads it) */
        } else if (strcmp(type, "object") == 0) {
            result_errorf(ctx, "duet: %s: `%s` cannot be an object", what, key);
            failed = 1;
        } else if (strcmp(type, "null") == 0) {
            if (unset) {
                st = unset(target, key);
            } else {
                result_errorf(ctx, "duet: %s: `%s` cannot be null", what, key);
                failed = 1;
            }
        } else {
            st = set(target, key, value ? value : "");
        }
        if (!failed && st != DUET_STATUS_OK) {
            result_duet_error(ctx, st);
            failed = 1;
        }
    }
    if (!failed && rc != SQLITE_DONE) {
        /* json_each's own error, e.g. "malformed JSON" */
        result_errorf(ctx, "duet: %s: %s", what, sqlite3_errmsg(db));
        failed = 1;
    }
    /* A scalar (e.g. '5') yields one row with json_type 'integer' above; '[]' and '{}' yield
       no rows: '{}' is fine, '[]' must still be refused. */
    if (!failed && rc == SQLITE_DONE && json[strspn(json, " \t\r\n")] != '{') {
        result_errorf(ctx, "duet: %s must be a JSON object", what);
        failed = 1;
    }
    sqlite3_finalize(stmt);
    return failed ? -1 : 0;
}

/* The `"model"` member of JSON params into `name` (empty when absent). Returns 0, or -1 after
   reporting the SQL error. */
static int model_name_from_json(sqlite3_context *ctx, const char *json, char name[MAX_MODEL_NAME + 1]) {
    sqlite3 *db = sqlite3_context_db_handle(ctx);
    sqlite3_stmt *stmt = NULL;
    name[0] = 0;
    if (sqlite3_prepare_v2(db, "SELECT json_type(?1, '$.model'), json_extract(?1, '$.model') WHERE json_valid(?1) AND json_type(?1) = 'object'", -1, &stmt, NULL) != SQLITE_OK) {
        result_errorf(ctx, "duet: cannot read JSON: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_text(stmt, 1, json, -1, SQLITE_STATIC);
    int failed = 0;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
        const char *type = (const char *)sqlite3_column_text(stmt, 0);
        const char *value = (const char *)sqlite3_column_text(stmt, 1);
        if (!type || strcmp(type, "text") != 0 || !value || !*value || strlen(value) > MAX_MODEL_NAME) {
            result_errorf(ctx, "duet: json_params: `model` must be the name of a registered model (1 to %d bytes)", MAX_MODEL_NAME);
            failed = 1;
        } else {
            memcpy(name, value, strlen(value) + 1);
        }
    }
    sqlite3_finalize(stmt);
    return failed ? -1 : 0;
}

/* Params from optional argument `i` (NULL when absent or SQL NULL: the defaults), and the model
   they name (`"model"`, else the default). Returns 0, or -1 after reporting the SQL error. */
static int params_and_model(sqlite3_context *ctx, int argc, sqlite3_value **argv, int i, duet_params **out,
                            const duet_model **model) {
    *out = NULL;
    char name[MAX_MODEL_NAME + 1] = {0};
    const char *json = NULL;
    if (argc > i && sqlite3_value_type(argv[i]) != SQLITE_NULL) {
        int is_null = 0;
        json = text_arg(ctx, argv, i, "json_params", &is_null);
        if (!json) return -1;
        if (model_name_from_json(ctx, json, name) != 0) return -1;
    }
    if (!(*model = need_model(ctx, name[0] ? name : NULL))) return -1;
    if (!json) return 0;
    duet_params *params = NULL;
    duet_status st = duet_params_new(&params);
    if (st != DUET_STATUS_OK) {
        result_duet_error(ctx, st);
        return -1;
    }
    if (apply_json(ctx, json, "json_params", params, params_set_string, params_unset) != 0) {
        duet_params_free(params);
        return -1;
    }
    *out = params;
    return 0;
}

/* Opens the model at argv[at] with options at argv[at + 1] into `*slot` (the previous model is
   freed only on success) and returns its info JSON as the SQL result. */
static void open_into(sqlite3_context *ctx, int argc, sqlite3_value **argv, int at, duet_model **slot) {
    int is_null = 0;
    const char *dir = text_arg(ctx, argv, at, "model_dir", &is_null);
    if (is_null) {
        sqlite3_result_error(ctx, "duet: duet_open needs a model directory, not NULL", -1);
        return;
    }
    if (!dir) return;
    duet_model_options *options = NULL;
    if (argc > at + 1 && sqlite3_value_type(argv[at + 1]) != SQLITE_NULL) {
        const char *json = text_arg(ctx, argv, at + 1, "json_options", &is_null);
        if (!json) return;
        duet_status st = duet_model_options_new(&options);
        if (st != DUET_STATUS_OK) {
            result_duet_error(ctx, st);
            return;
        }
        if (apply_json(ctx, json, "json_options", options, options_set_string, NULL) != 0) {
            duet_model_options_free(options);
            return;
        }
    }
    duet_model *model = NULL;
    duet_status st = duet_model_open(dir, options, &model);
    duet_model_options_free(options);
    if (st != DUET_STATUS_OK) {
        result_duet_error(ctx, st);
        return;
    }
    char *info = NULL;
    st = duet_model_info_json(model, &info);
    if (st != DUET_STATUS_OK) {
        result_duet_error(ctx, st);
        duet_model_free(model);
        return;
    }
    /* No call of this connection is running (SQL functions run one at a time, to the end), so
       the previous model can go now. */
    duet_model_free(*slot);
    *slot = model;
    sqlite3_result_text(ctx, info, -1, SQLITE_TRANSIENT);
    duet_string_free(info);
}

/* duet_open(model_dir [, json_options]) */
static void fn_open(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    duet_conn *conn = sqlite3_user_data(ctx);
    open_into(ctx, argc, argv, 0, &conn->model);
}

/* duet_register(name, model_dir [, json_options]) */
static void fn_register(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    duet_conn *conn = sqlite3_user_data(ctx);
    int is_null = 0;
    const char *name = text_arg(ctx, argv, 0, "name", &is_null);
    if (is_null || (name && (!*name || strlen(name) > MAX_MODEL_NAME))) {
        result_errorf(ctx, "duet: duet_register needs a model name of 1 to %d bytes", MAX_MODEL_NAME);
        return;
    }
    if (!name) return;
    int slot = -1;
    for (int i = 0; i < MAX_NAMED_MODELS; i++) {
        if (conn->named[i].model && strcmp(conn->named[i].name, name) == 0) { slot = i; break; }
        if (!conn->named[i].model && slot < 0) slot = i;
    }
    if (slot < 0) {
        result_errorf(ctx, "duet: %d models are registered already, the most a connection holds", MAX_NAMED_MODELS);
        return;
    }
    char copy[MAX_MODEL_NAME + 1];
    memcpy(copy, name, strlen(name) + 1); /* argv[0] stays valid, but copy before opening */
    open_into(ctx, argc, argv, 1, &conn->named[slot].model);
    if (conn->named[slot].model) memcpy(conn->named[slot].name, copy, strlen(copy) + 1);
}

/* The arguments shared by duet_generate, duet_summarize and duet_embed: the connection's model,
   argument 0 as text, and optional JSON params at argument 1. Non-zero: the SQL result is
   already set (an error, or NULL for a NULL text) and the call must return. */
static int text_call_args(sqlite3_context *ctx, int argc, sqlite3_value **argv,
                          const duet_model **model, const char **text, duet_params **params) {
    int is_null = 0;
    *params = NULL;
    if (!(*text = text_arg(ctx, argv, 0, "text", &is_null))) return 1;
    return params_and_model(ctx, argc, argv, 1, params, model) != 0;
}

/* sqlite3_interrupt() on the connection ends a duet call within one decoding step: duet's progress
   callback, called before every step, asks SQLite whether the statement was interrupted
   (sqlite3_is_interrupted from SQLite 3.41; before it, a nested "SELECT 1" fails with
   SQLITE_INTERRUPT while the flag is up), at most every 10 ms. */
struct interrupt_watch {
    sqlite3 *db;
    struct timespec next;
    int interrupted;
};

static int connection_interrupted(sqlite3 *db) {
#if SQLITE_VERSION_NUMBER >= 3041000
    /* the host's SQLite may be older than these headers: its API table then ends before this */
    if (sqlite3_libversion_number() >= 3041000) return sqlite3_is_interrupted(db);
#endif
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT 1", -1, &stmt, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_INTERRUPT;
}

static int32_t check_interrupt(void *user_data, size_t done, size_t total, size_t level) {
    (void)done; (void)total; (void)level;
    struct interrupt_watch *w = user_data;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!w->interrupted && (now.tv_sec > w->next.tv_sec || (now.tv_sec == w->next.tv_sec && now.tv_nsec >= w->next.tv_nsec))) {
        w->interrupted = connection_interrupted(w->db);
        w->next = now;
        w->next.tv_nsec += 10 * 1000 * 1000;
        if (w->next.tv_nsec >= 1000000000L) { w->next.tv_sec++; w->next.tv_nsec -= 1000000000L; }
    }
    return w->interrupted;
}

static duet_callbacks interrupt_callbacks(sqlite3_context *ctx, struct interrupt_watch *w) {
    w->db = sqlite3_context_db_handle(ctx);
    w->next.tv_sec = 0;
    w->next.tv_nsec = 0;
    w->interrupted = 0;
    duet_callbacks callbacks = {NULL, check_interrupt, w};
    return callbacks;
}

/* The SQL result of a call that returned `reply`: its text, SQLITE_INTERRUPT, or the error. */
static void result_reply(sqlite3_context *ctx, duet_status st, duet_reply *reply, const struct interrupt_watch *watch) {
    const char *out = NULL;
    if (st == DUET_STATUS_OK) st = duet_reply_text(reply, &out);
    if (watch->interrupted) sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
    else if (st == DUET_STATUS_OK) sqlite3_result_text(ctx, out, -1, SQLITE_TRANSIENT);
    else result_duet_error(ctx, st);
    duet_reply_free(reply);
}

/* duet_generate(text [, json_params]) */
static void fn_generate(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const duet_model *model;
    const char *text;
    duet_params *params;
    if (text_call_args(ctx, argc, argv, &model, &text, &params) != 0) return;
    duet_result *result = NULL;
    const char *inputs[] = {text};
    struct interrupt_watch watch;
    duet_callbacks callbacks = interrupt_callbacks(ctx, &watch);
    duet_status st = duet_generate_with(model, inputs, 1, params, &callbacks, &result);
    const char *out = NULL;
    if (st == DUET_STATUS_OK) st = duet_result_text(result, 0, 0, &out);
    if (watch.interrupted) sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
    else if (st == DUET_STATUS_OK) sqlite3_result_text(ctx, out, -1, SQLITE_TRANSIENT);
    else result_duet_error(ctx, st);
    duet_result_free(result);
    duet_params_free(params);
}

/* duet_summarize(text [, json_params]) */
static void fn_summarize(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const duet_model *model;
    const char *text;
    duet_params *params;
    if (text_call_args(ctx, argc, argv, &model, &text, &params) != 0) return;
    duet_reply *reply = NULL;
    struct interrupt_watch watch;
    duet_callbacks callbacks = interrupt_callbacks(ctx, &watch);
    duet_status st = duet_summarize(model, text, params, &callbacks, &reply);
    result_reply(ctx, st, reply, &watch);
    duet_params_free(params);
}

/* duet_translate(text, to [, from [, json_params]]) */
static void fn_translate(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    int text_null = 0, to_null = 0, from_null = 1;
    const char *text = text_arg(ctx, argv, 0, "text", &text_null);
    if (!text) {
        if (text_null) sqlite3_result_null(ctx);
        return;
    }
    const char *to = text_arg(ctx, argv, 1, "to", &to_null);
    if (!to && !to_null) return;
    const char *from = NULL;
    if (argc > 2) {
        from = text_arg(ctx, argv, 2, "from", &from_null);
        if (!from && !from_null) return;
    }
    const duet_model *model;
    duet_params *params;
    if (params_and_model(ctx, argc, argv, 3, &params, &model) != 0) return;
    duet_reply *reply = NULL;
    struct interrupt_watch watch;
    duet_callbacks callbacks = interrupt_callbacks(ctx, &watch);
    duet_status st = duet_translate(model, text, to, from, params, &callbacks, &reply);
    result_reply(ctx, st, reply, &watch);
    duet_params_free(params);
}

/* duet_embed(text [, json_params]) -> BLOB of float32 */
static void fn_embed(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const duet_model *model;
    const char *text;
    duet_params *params;
    if (text_call_args(ctx, argc, argv, &model, &text, &params) != 0) return;
    size_t dim = 0;
    duet_status st = duet_model_embedding_dim(model, &dim);
    float *vector = NULL;
    if (st == DUET_STATUS_OK) {
        vector = sqlite3_malloc64(sizeof(float) * (dim ? dim : 1));
        if (!vector) {
            sqlite3_result_error_nomem(ctx);
            duet_params_free(params);
            return;
        }
        const char *texts[] = {text};
        st = duet_embed(model, texts, 1, params, vector, dim);
    }
    if (st == DUET_STATUS_OK) sqlite3_result_blob64(ctx, vector, sizeof(float) * dim, sqlite3_free);
    else {
        result_duet_error(ctx, st);
        sqlite3_free(vector);
    }
    duet_params_free(params);
}

/* duet_rerank(query, text [, json_params]) -> REAL */
static void fn_rerank(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    int is_null = 0;
    const char *query = text_arg(ctx, argv, 0, "query", &is_null);
    if (!query) return;
    const char *text = text_arg(ctx, argv, 1, "text", &is_null);
    if (!text) return;
    duet_params *params = NULL;
    const duet_model *model = NULL;
    if (params_and_model(ctx, argc, argv, 2, &params, &model) != 0) return;
    double score = 0;
    const char *passages[] = {text};
    duet_status st = duet_rerank(model, query, passages, 1, params, &score);
    if (st == DUET_STATUS_OK) sqlite3_result_double(ctx, score);
    else result_duet_error(ctx, st);
    duet_params_free(params);
}

/* The float32 vectors of two BLOB arguments, or 0 after setting the result (NULL for a NULL
   argument, else an error). */
static int two_vectors(sqlite3_context *ctx, sqlite3_value **argv, const float **a, const float **b, size_t *n) {
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return 0;
    }
    if (sqlite3_value_type(argv[0]) != SQLITE_BLOB || sqlite3_value_type(argv[1]) != SQLITE_BLOB) {
        sqlite3_result_error(ctx, "duet: vectors must be float32 BLOBs (as duet_embed returns)", -1);
        return 0;
    }
    int la = sqlite3_value_bytes(argv[0]), lb = sqlite3_value_bytes(argv[1]);
    if (la != lb || la == 0 || la % 4 != 0) {
        result_errorf(ctx, "duet: vectors of %d and %d bytes: both must hold the same number of float32s", la, lb);
        return 0;
    }
    *a = sqlite3_value_blob(argv[0]);
    *b = sqlite3_value_blob(argv[1]);
    *n = (size_t)la / 4;
    return 1;
}

/* duet_distance_cosine(a, b) = 1 - cos(a, b) */
static void fn_distance_cosine(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *a, *b;
    size_t n;
    if (!two_vectors(ctx, argv, &a, &b, &n)) return;
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        float x, y;
        memcpy(&x, (const char *)a + 4 * i, 4); /* BLOBs need not be 4-byte aligned */
        memcpy(&y, (const char *)b + 4 * i, 4);
        dot += (double)x * y;
        na += (double)x * x;
        nb += (double)y * y;
    }
    if (na == 0 || nb == 0) {
        sqlite3_result_error(ctx, "duet: the cosine distance of a zero vector is undefined", -1);
        return;
    }
    sqlite3_result_double(ctx, 1.0 - dot / (sqrt(na) * sqrt(nb)));
}

/* duet_distance_l2(a, b) = |a - b| */
static void fn_distance_l2(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const float *a, *b;
    size_t n;
    if (!two_vectors(ctx, argv, &a, &b, &n)) return;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        float x, y;
        memcpy(&x, (const char *)a + 4 * i, 4);
        memcpy(&y, (const char *)b + 4 * i, 4);
        sum += ((double)x - y) * ((double)x - y);
    }
    sqlite3_result_double(ctx, sqrt(sum));
}

static int add_function(sqlite3 *db, duet_conn *conn, const char *name, int n_args, int flags,
                        void (*fn)(sqlite3_context *, int, sqlite3_value **)) {
    conn->refs++; /* released by SQLite through conn_release, also when registering fails */
    return sqlite3_create_function_v2(db, name, n_args, SQLITE_UTF8 | flags, conn, fn, NULL, NULL, conn_release);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
/* The entry point SQLite derives from the file name "duet_sqlite" (letters only). */
int sqlite3_duetsqlite_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
    SQLITE_EXTENSION_INIT2(pApi);
    duet_conn *conn = sqlite3_malloc(sizeof *conn);
    if (!conn) return SQLITE_NOMEM;
    memset(conn, 0, sizeof *conn);
    conn->refs = 1; /* held while registering */
    static const struct {
        const char *name;
        int n_args;
        int flags;
        void (*fn)(sqlite3_context *, int, sqlite3_value **);
    } functions[] = {
        /* duet_open reads files: not callable from views, triggers or schema */
        {"duet_open", 1, SQLITE_DIRECTONLY, fn_open},
        {"duet_open", 2, SQLITE_DIRECTONLY, fn_open},
        {"duet_register", 2, SQLITE_DIRECTONLY, fn_register},
        {"duet_register", 3, SQLITE_DIRECTONLY, fn_register},
        {"duet_generate", 1, 0, fn_generate},
        {"duet_generate", 2, 0, fn_generate},
        {"duet_summarize", 1, 0, fn_summarize},
        {"duet_summarize", 2, 0, fn_summarize},
        {"duet_translate", 2, 0, fn_translate},
        {"duet_translate", 3, 0, fn_translate},
        {"duet_translate", 4, 0, fn_translate},
        {"duet_embed", 1, SQLITE_DETERMINISTIC, fn_embed},
        {"duet_embed", 2, SQLITE_DETERMINISTIC, fn_embed},
        {"duet_rerank", 2, SQLITE_DETERMINISTIC, fn_rerank},
        {"duet_rerank", 3, SQLITE_DETERMINISTIC, fn_rerank},
        {"duet_distance_cosine", 2, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, fn_distance_cosine},
        {"duet_distance_l2", 2, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, fn_distance_l2},
    };
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof functions / sizeof functions[0]; i++) {
        rc = add_function(db, conn, functions[i].name, functions[i].n_args, functions[i].flags, functions[i].fn);
    }
    if (rc != SQLITE_OK && pzErrMsg) *pzErrMsg = sqlite3_mprintf("duet: cannot register functions: %s", sqlite3_errmsg(db));
    conn_release(conn);
    return rc;
}

#ifdef _WIN32
__declspec(dllexport)
#endif
/* The same, for `.load duet_sqlite sqlite3_duet_sqlite_init` and hosts that spell it so. */
int sqlite3_duet_sqlite_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
    return sqlite3_duetsqlite_init(db, pzErrMsg, pApi);
}
