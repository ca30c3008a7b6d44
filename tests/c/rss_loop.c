/*
 * Calls the C API in a loop and reports resident memory growth between call 500 and the end:
 *   rss_loop MODEL_DIR [CALLS] [IO_BINDING]   (default 10000; fails above 5% growth; IO_BINDING is
 *   the io_binding model option, e.g. `on` for the device path's IoBinding and Gather graph)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "duet.h"

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
    }
    if (f) fclose(f);
    return kib;
}

#define CHECK(call) do { duet_status st_ = (call); if (st_ != DUET_STATUS_OK) { \
    fprintf(stderr, "%s: %s\n", #call, duet_last_error_message()); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL_DIR [CALLS]\n", argv[0]); return 2; }
    long calls = argc > 2 ? atol(argv[2]) : 10000;
    duet_model *model = NULL;
    duet_model_options *options = NULL;
    CHECK(duet_model_options_new(&options));
    if (argc > 3) CHECK(duet_model_options_set_string(options, "io_binding", argv[3]));
    CHECK(duet_model_open(argv[1], options, &model));
    duet_model_options_free(options);
    const char *texts[] = {"The river flooded the fields.", "今天的会议改到下午三点。"};
    float vec[2 * 64];
    double scores[2];
    long base = 0;
    for (long i = 0; i < calls; i++) {
        if (i == 500) base = rss_kib();
        duet_params *p = NULL;
        CHECK(duet_params_new(&p));
        CHECK(duet_params_set_int(p, "max_new_tokens", 3));
        switch (i % 5) {
        case 0: {
            duet_result *r = NULL;
            CHECK(duet_generate(model, texts, 2, p, NULL, NULL, &r));
            char *json = NULL;
            CHECK(duet_result_to_json(r, &json));
            duet_string_free(json);
            duet_result_free(r);
            break;
        }
        case 1: CHECK(duet_embed(model, texts, 2, p, vec, 2 * 64)); break;
        case 2: CHECK(duet_rerank(model, texts[0], texts, 2, p, scores)); break;
        case 3: {
            duet_chat *chat = NULL;
            duet_reply *reply = NULL;
            CHECK(duet_chat_new(model, p, &chat));
            CHECK(duet_chat_send(chat, texts[1], NULL, &reply));
            duet_reply_free(reply);
            duet_chat_free(chat);
            break;
        }
        default: {
            duet_result *r = NULL;
            if (duet_params_set_int(p, "num_beams", 0) == DUET_STATUS_OK) return 1; /* an error path too */
            CHECK(duet_generate(model, texts, 1, NULL, NULL, NULL, &r));
            duet_result_free(r);
        }
        }
        duet_params_free(p);
    }
    long end = rss_kib();
    double growth = base > 0 ? 100.0 * (double)(end - base) / (double)base : 0;
    printf("rss_loop: %ld calls, RSS %ld KiB at call 500, %ld KiB at the end: %+.2f%%\n", calls, base, end, growth);
    duet_model_free(model);
    return growth > 5.0;
}
