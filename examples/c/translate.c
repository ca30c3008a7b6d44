/*
 * Translate standard input, as a host program would:
 *   translate MODEL_DIR TO [FROM] [KEY=INT ...]
 * Prints the translation. Also checks what a host meets: an unknown code fails with
 * DUET_STATUS_UNKNOWN_LANGUAGE and names the model's codes, and the same text translated line by
 * line equals the document's lines.
 */
#include <string.h>
#include "common.h"

static char *read_stdin(void) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += got;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
    return buf;
}

static int32_t count_progress(void *user_data, size_t done, size_t total, size_t level) {
    (void)level;
    size_t *last_total = user_data;
    REQUIRE(done <= total, "progress %zu of %zu", done, total);
    *last_total = total;
    return 0;
}

static char *translate(duet_model *model, const char *text, const char *to, const char *from, duet_params *params,
                       int64_t *chunks) {
    size_t total = 0;
    duet_callbacks cb = {.on_token = NULL, .on_progress = count_progress, .user_data = &total};
    duet_reply *reply = NULL;
    CHECK(duet_translate(model, text, to, from, params, &cb, &reply));
    const char *out = NULL;
    CHECK(duet_reply_text(reply, &out));
    CHECK(duet_reply_stat(reply, "chunks", chunks));
    REQUIRE((size_t)*chunks == total, "chunks %lld, progress said %zu", (long long)*chunks, total);
    size_t len = strlen(out);
    char *copy = malloc(len + 1);
    memcpy(copy, out, len + 1);
    duet_reply_free(reply);
    return copy;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL_DIR TO [FROM] [KEY=INT ...]\n", argv[0]); return 2; }
    const char *from = (argc > 3 && !strchr(argv[3], '=')) ? argv[3] : NULL;
    duet_model *model = NULL;
    CHECK(duet_model_open(argv[1], NULL, &model));
    duet_params *params = NULL;
    CHECK(duet_params_new(&params));
    for (int i = from ? 4 : 3; i < argc; i++) {
        char key[64];
        const char *eq = strchr(argv[i], '=');
        REQUIRE(eq && (size_t)(eq - argv[i]) < sizeof key, "expected KEY=INT: %s", argv[i]);
        memcpy(key, argv[i], (size_t)(eq - argv[i]));
        key[eq - argv[i]] = '\0';
        CHECK(duet_params_set_int(params, key, atoll(eq + 1)));
    }
    char *text = read_stdin();
    int64_t chunks = 0;
    char *out = translate(model, text, argv[2], from, params, &chunks);
    printf("%s\n", out);

    /* a document of two copies, two lines: each line is the sentence's translation */
    size_t n = strlen(text);
    char *doc = malloc(2 * n + 2);
    sprintf(doc, "%s\n%s", text, text);
    int64_t doc_chunks = 0;
    char *both = translate(model, doc, argv[2], from, params, &doc_chunks);
    char *want = malloc(2 * strlen(out) + 2);
    sprintf(want, "%s\n%s", out, out);
    REQUIRE(strcmp(both, want) == 0 && doc_chunks == 2 * chunks, "two lines gave %s", both);

    duet_reply *reply = NULL;
    EXPECT_STATUS(duet_translate(model, text, "xx_Nope", NULL, params, NULL, &reply), DUET_STATUS_UNKNOWN_LANGUAGE);
    REQUIRE(reply == NULL, "no reply on failure");
    REQUIRE(strstr(duet_last_error_message(), "xx_Nope"), "message: %s", duet_last_error_message());
    EXPECT_STATUS(duet_translate(model, NULL, argv[2], NULL, params, NULL, &reply), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_translate(model, text, argv[2], NULL, params, NULL, NULL), DUET_STATUS_NULL_POINTER);
    fprintf(stderr, "translate: %lld chunk(s); checks passed\n", (long long)chunks);
    free(text), free(out), free(doc), free(both), free(want);
    duet_params_free(params);
    duet_model_free(model);
    return 0;
}
