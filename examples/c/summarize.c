/*
 * Summarize a document of any length with progress, as a host program would:
 *   summarize MODEL_DIR [FILE]     (without FILE: a generated 5,000-word document)
 */
#include <string.h>
#include "common.h"

static int32_t on_progress(void *user_data, size_t done, size_t total, size_t level) {
    size_t *calls = user_data;
    if (done == total) printf("  level %zu: %zu/%zu chunks\n", level, done, total);
    (*calls)++;
    return 0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static char *make_document(size_t words) {
    static const char *vocab[] = {"river", "council", "library", "storm", "museum", "train", "market", "winter"};
    char *doc = malloc(words * 12 + 16);
    size_t len = 0;
    for (size_t i = 0; i < words; i++) {
        len += (size_t)sprintf(doc + len, "%s%s", vocab[(i * 7 + i / 3) % 8], (i % 11 == 10) ? ". " : " ");
    }
    strcpy(doc + len, ".");
    return doc;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL_DIR [FILE]\n", argv[0]); return 2; }
    char *doc = argc > 2 ? read_file(argv[2]) : make_document(5000);
    REQUIRE(doc != NULL, "cannot read %s", argv[2]);

    duet_model *model = NULL;
    CHECK(duet_model_open(argv[1], NULL, &model));
    duet_params *params = NULL;
    CHECK(duet_params_new(&params));
    CHECK(duet_params_set_string(params, "summary_length", "short"));

    size_t progress_calls = 0;
    duet_callbacks callbacks = {NULL, on_progress, &progress_calls};
    duet_reply *reply = NULL;
    CHECK(duet_summarize(model, doc, params, &callbacks, &reply));
    const char *text = NULL;
    int64_t chunks = 0, levels = 0;
    CHECK(duet_reply_text(reply, &text));
    CHECK(duet_reply_stat(reply, "chunks", &chunks));
    CHECK(duet_reply_stat(reply, "levels", &levels));
    printf("summary (%lld chunks, %lld levels): %.120s\n", (long long)chunks, (long long)levels, text);
    if (argc == 2) REQUIRE(chunks > 1 && levels >= 2 && progress_calls > 0, "a long document must be chunked");
    duet_reply_free(reply);

    /* what a host must be told rather than crash on */
    EXPECT_STATUS(duet_summarize(model, "   ", params, NULL, &reply), DUET_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(duet_summarize(model, "\xff\xfe", params, NULL, &reply), DUET_STATUS_INVALID_UTF8);
    EXPECT_STATUS(duet_summarize(model, NULL, params, NULL, &reply), DUET_STATUS_NULL_POINTER);

    duet_params_free(params);
    duet_model_free(model);
    free(doc);
    printf("summarize: ok\n");
    return 0;
}
