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
 *
 * Functions
 *   duet_open(model_dir [, json_options])  opens a model for this connection (replacing the one
 *                                          open before, which stays if opening fails); returns
 *                                          the model's info JSON. Options: `{"layout": "split",
 *                                          "intra_threads": 2, "providers": "cuda,cpu"}`.
 *   duet_summarize(text [, json_params])   the summary (TEXT)
 *   duet_generate(text [, json_params])    the first sequence's text (TEXT)
 *   duet_embed(text [, json_params])       the L2-normalized embedding: a BLOB of
 *                                          duet_model_embedding_dim() float32s in native byte
 *                                          order (little-endian on x86-64 and arm64)
 *   duet_rerank(query, text [, json_params]) the relevance of `text` to `query` (REAL, higher is
 *                                          more relevant; duet_rerank with one passage)
 *   json_params is a JSON object of generation keys (Hugging Face names):
 *   `{"max_new_tokens": 32, "do_sample": true, "stop_strings": ["###"]}`; null unsets a key.
 *
 * A SQL NULL in place of a text gives NULL, as SQL functions do. Every failure is a SQL error
 * "duet: DUET_STATUS_...: message"; before duet_open the functions fail with "call
 * duet_open(model_dir) first". The model belongs to the connection: it is freed when the
 * connection closes (or by the next duet_open), and other connections must open their own.
 *
 * Build: gcc -shared -fPIC -Iinclude examples/sqlite/duet_sqlite.c -o duet_sqlite.so
 *          -Ltarget/release -lduet -Wl,-rpath,$PWD/target/release
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include "duet.h"

/* What one connection holds: its model, shared by every function registered on it. */
typedef struct {
    duet_model *model;
    int refs; /* one per registered function; freed when the last is destroyed */
} duet_conn;

static void conn_release(void *p) {
    duet_conn *conn = p;
    if (--conn->refs == 0) {
        duet_model_free(conn->model);
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

/* The model of this connection, or NULL after reporting the SQL error. */
static const duet_model *need_model(sqlite3_context *ctx) {
    duet_conn *conn = sqlite3_user_data(ctx);
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

/* Params from optional argument `i` (NULL when absent or SQL NULL: the defaults). Returns 0, or
   -1 after reporting the SQL error. */
static int params_arg(sqlite3_context *ctx, int argc, sqlite3_value **argv, int i, duet_params **out) {
    *out = NULL;
    if (argc <= i || sqlite3_value_type(argv[i]) == SQLITE_NULL) return 0;
    int is_null = 0;
    const char *json = text_arg(ctx, argv, i, "json_params", &is_null);
    if (!json) return -1;
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

/* duet_open(model_dir [, json_options]) */
static void fn_open(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    duet_conn *conn = sqlite3_user_data(ctx);
    int is_null = 0;
    const char *dir = text_arg(ctx, argv, 0, "model_dir", &is_null);
    if (is_null) {
        sqlite3_result_error(ctx, "duet: duet_open needs a model directory, not NULL", -1);
        return;
    }
    if (!dir) return;
    duet_model_options *options = NULL;
    if (argc > 1 && sqlite3_value_type(argv[1]) != SQLITE_NULL) {
        const char *json = text_arg(ctx, argv, 1, "json_options", &is_null);
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
    duet_model_free(conn->model);
    conn->model = model;
    sqlite3_result_text(ctx, info, -1, SQLITE_TRANSIENT);
    duet_string_free(info);
}

/* The arguments shared by duet_generate, duet_summarize and duet_embed: the connection's model,
   argument 0 as text, and optional JSON params at argument 1. Non-zero: the SQL result is
   already set (an error, or NULL for a NULL text) and the call must return. */
static int text_call_args(sqlite3_context *ctx, int argc, sqlite3_value **argv,
                          const duet_model **model, const char **text, duet_params **params) {
    int is_null = 0;
    *params = NULL;
    if (!(*model = need_model(ctx))) return 1;
    if (!(*text = text_arg(ctx, argv, 0, "text", &is_null))) return 1;
    return params_arg(ctx, argc, argv, 1, params) != 0;
}

/* duet_generate(text [, json_params]) */
static void fn_generate(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const duet_model *model;
    const char *text;
    duet_params *params;
    if (text_call_args(ctx, argc, argv, &model, &text, &params) != 0) return;
    duet_result *result = NULL;
    const char *inputs[] = {text};
    duet_status st = duet_generate(model, inputs, 1, params, NULL, NULL, &result);
    const char *out = NULL;
    if (st == DUET_STATUS_OK) st = duet_result_text(result, 0, 0, &out);
    if (st == DUET_STATUS_OK) sqlite3_result_text(ctx, out, -1, SQLITE_TRANSIENT);
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
    duet_status st = duet_summarize(model, text, params, NULL, &reply);
    const char *out = NULL;
    if (st == DUET_STATUS_OK) st = duet_reply_text(reply, &out);
    if (st == DUET_STATUS_OK) sqlite3_result_text(ctx, out, -1, SQLITE_TRANSIENT);
    else result_duet_error(ctx, st);
    duet_reply_free(reply);
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
    const duet_model *model = need_model(ctx);
    if (!model) return;
    int is_null = 0;
    const char *query = text_arg(ctx, argv, 0, "query", &is_null);
    if (!query) return;
    const char *text = text_arg(ctx, argv, 1, "text", &is_null);
    if (!text) return;
    duet_params *params = NULL;
    if (params_arg(ctx, argc, argv, 2, &params) != 0) return;
    double score = 0;
    const char *passages[] = {text};
    duet_status st = duet_rerank(model, query, passages, 1, params, &score);
    if (st == DUET_STATUS_OK) sqlite3_result_double(ctx, score);
    else result_duet_error(ctx, st);
    duet_params_free(params);
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
    conn->model = NULL;
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
        {"duet_generate", 1, 0, fn_generate},
        {"duet_generate", 2, 0, fn_generate},
        {"duet_summarize", 1, 0, fn_summarize},
        {"duet_summarize", 2, 0, fn_summarize},
        {"duet_embed", 1, 0, fn_embed},
        {"duet_embed", 2, 0, fn_embed},
        {"duet_rerank", 2, 0, fn_rerank},
        {"duet_rerank", 3, 0, fn_rerank},
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
