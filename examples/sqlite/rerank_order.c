/*
 * Checks what the SQLite extension answered against the C API:
 *   sqlite3 ... < test.sql | rerank_order MODEL_DIR QUERY
 * Reads test.sql's output lines (expect_hits|IDS, hit|ID|BODY, ranked|ID|SCORE,
 * embed|BYTES|HEX, generate|HEX, sample|HEX), recomputes the reranking, the embedding and the generation with
 * duet_rerank / duet_embed / duet_generate, and exits non-zero on any difference:
 *   - the keyword hits are the expected ids;
 *   - the SQL order (ORDER BY duet_rerank DESC) is the order of the C API's scores, and each SQL
 *     score is the C API's score for that passage (and close to the batched duet_rerank score);
 *   - duet_embed's BLOB is 4 * duet_model_embedding_dim() bytes, the C API's float32s;
 *   - duet_generate with JSON params gives the C API's text with the same params.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet.h"

#define MAX_HITS 64

static int failures;

#define CHECK(call) do { duet_status st_ = (call); if (st_ != DUET_STATUS_OK) { \
    fprintf(stderr, "%s failed: %s: %s\n", #call, duet_status_name((int32_t)st_), duet_last_error_message()); exit(1); } } while (0)

static void fail(const char *what, const char *detail) {
    failures++;
    fprintf(stderr, "FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

static char *hex_of(const void *data, size_t len) {
    static const char digits[] = "0123456789ABCDEF";
    const unsigned char *b = data;
    char *out = malloc(len * 2 + 1);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[len * 2] = '\0';
    return out;
}

/* duet_generate(query) with `params` through the C API must give the text SQL gave (hex). */
static void check_generate(const duet_model *model, const char *query, const duet_params *params, const char *what,
                           const char *sql_hex) {
    const char *inputs[] = {query};
    duet_result *result = NULL;
    CHECK(duet_generate(model, inputs, 1, params, NULL, NULL, &result));
    const char *text = NULL;
    CHECK(duet_result_text(result, 0, 0, &text));
    char *hex = hex_of(text, strlen(text));
    printf("generate (%s): \"%s\"\n", what, text);
    if (!sql_hex || strcmp(sql_hex, hex) != 0) fail("duet_generate with JSON params differs from the C API", what);
    free(hex);
    duet_result_free(result);
}

struct hit { long long id; char *body; double c_score; };

static int by_score_desc(const void *a, const void *b) {
    const struct hit *x = a, *y = b;
    return (x->c_score < y->c_score) - (x->c_score > y->c_score);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: sqlite3 ... < test.sql | %s MODEL_DIR QUERY\n", argv[0]); return 2; }
    const char *query = argv[2];
    struct hit hits[MAX_HITS];
    size_t n_hits = 0, n_ranked = 0;
    long long ranked_ids[MAX_HITS];
    double ranked_scores[MAX_HITS];
    char *expect_hits = NULL, *embed_hex = NULL, *generate_hex = NULL, *sample_hex = NULL;
    long embed_bytes = -1;

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        if (line[len - 1] == '\n') line[--len] = '\0';
        printf("sql> %.110s%s\n", line, len > 110 ? "..." : "");
        char *rest = strchr(line, '|');
        if (!rest) continue;
        *rest++ = '\0';
        if (strcmp(line, "expect_hits") == 0) {
            expect_hits = strdup(rest);
        } else if (strcmp(line, "hit") == 0 && n_hits < MAX_HITS) {
            char *body = strchr(rest, '|');
            if (!body) { fail("hit line without a body", rest); continue; }
            *body++ = '\0';
            hits[n_hits].id = atoll(rest);
            hits[n_hits].body = strdup(body);
            n_hits++;
        } else if (strcmp(line, "ranked") == 0 && n_ranked < MAX_HITS) {
            char *score = strchr(rest, '|');
            if (!score) { fail("ranked line without a score", rest); continue; }
            *score++ = '\0';
            ranked_ids[n_ranked] = atoll(rest);
            ranked_scores[n_ranked] = strtod(score, NULL);
            n_ranked++;
        } else if (strcmp(line, "embed") == 0) {
            char *hex = strchr(rest, '|');
            if (!hex) { fail("embed line without hex", rest); continue; }
            *hex++ = '\0';
            embed_bytes = atol(rest);
            embed_hex = strdup(hex);
        } else if (strcmp(line, "generate") == 0) {
            generate_hex = strdup(rest);
        } else if (strcmp(line, "sample") == 0) {
            sample_hex = strdup(rest);
        }
    }
    free(line);

    /* the keyword stage */
    char found[1024] = "";
    for (size_t i = 0; i < n_hits; i++) {
        size_t used = strlen(found);
        snprintf(found + used, sizeof found - used, "%s%lld", i ? "," : "", hits[i].id);
    }
    if (!expect_hits || strcmp(found, expect_hits) != 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "found %s, expected %s", found, expect_hits ? expect_hits : "(no expect_hits line)");
        fail("keyword hits", msg);
    }
    if (n_hits < 2) fail("too few hits to check an order", NULL);

    duet_model *model = NULL;
    CHECK(duet_model_open(argv[1], NULL, &model));

    /* the rerank order: one passage at a time (as the SQL function calls it), and batched */
    const char *bodies[MAX_HITS];
    double batched[MAX_HITS];
    for (size_t i = 0; i < n_hits; i++) {
        bodies[i] = hits[i].body;
        CHECK(duet_rerank(model, query, &bodies[i], 1, NULL, &hits[i].c_score));
    }
    if (n_hits) CHECK(duet_rerank(model, query, bodies, n_hits, NULL, batched));
    for (size_t i = 0; i < n_hits; i++) {
        if (fabs(batched[i] - hits[i].c_score) > 1e-4) {
            char msg[128];
            snprintf(msg, sizeof msg, "id %lld: %.9g alone, %.9g batched", hits[i].id, hits[i].c_score, batched[i]);
            fail("batched rerank", msg);
        }
    }
    qsort(hits, n_hits, sizeof hits[0], by_score_desc);
    if (n_ranked != n_hits) fail("the SQL ranking has another number of rows than the hits", NULL);
    for (size_t i = 0; i < n_hits && i < n_ranked; i++) {
        printf("rank %zu: SQL id %lld (%.9g), C API id %lld (%.9g)\n", i + 1, ranked_ids[i], ranked_scores[i],
               hits[i].id, hits[i].c_score);
        if (ranked_ids[i] != hits[i].id) fail("SQL order differs from the C API's scores", NULL);
        else if (fabs(ranked_scores[i] - hits[i].c_score) > 1e-9 * fmax(1.0, fabs(hits[i].c_score)))
            fail("SQL score differs from the C API's", NULL);
    }

    /* the embedding BLOB */
    size_t dim = 0;
    CHECK(duet_model_embedding_dim(model, &dim));
    float *vector = malloc(sizeof(float) * dim);
    const char *q[] = {query};
    CHECK(duet_embed(model, q, 1, NULL, vector, dim));
    char *hex = hex_of(vector, sizeof(float) * dim);
    printf("embed: %ld bytes from SQL, dim %zu\n", embed_bytes, dim);
    if (embed_bytes != (long)(4 * dim)) fail("duet_embed's BLOB is not 4 * dim bytes", NULL);
    if (!embed_hex || strcmp(embed_hex, hex) != 0) fail("duet_embed's BLOB is not the C API's float32s", NULL);
    free(hex);
    free(vector);

    /* duet_generate with JSON params = duet_generate with the same params set in C */
    duet_params *params = NULL;
    CHECK(duet_params_new(&params));
    CHECK(duet_params_set_int(params, "max_new_tokens", 6));
    CHECK(duet_params_set_int(params, "num_beams", 2));
    CHECK(duet_params_set_bool(params, "early_stopping", true));
    CHECK(duet_params_set_string(params, "stop_strings", "[\"###\"]"));
    check_generate(model, query, params, "beam search", generate_hex);
    duet_params_free(params);

    CHECK(duet_params_new(&params));
    CHECK(duet_params_set_bool(params, "do_sample", true));
    CHECK(duet_params_set_int(params, "seed", 7));
    CHECK(duet_params_set_float(params, "temperature", 0.7));
    CHECK(duet_params_set_float(params, "top_p", 0.9));
    CHECK(duet_params_set_int(params, "max_new_tokens", 8));
    check_generate(model, query, params, "sampling", sample_hex);
    duet_params_free(params);

    duet_model_free(model);
    for (size_t i = 0; i < n_hits; i++) free(hits[i].body);
    free(expect_hits);
    free(embed_hex);
    free(generate_hex);
    free(sample_hex);
    if (failures) {
        fprintf(stderr, "rerank_order: %d check(s) failed\n", failures);
        return 1;
    }
    printf("rerank_order: the SQL answers match the C API\n");
    return 0;
}
