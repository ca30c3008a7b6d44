/*
 * Driving a generation by hand with duet's pull API: the host asks for one event at a time,
 * prints text as it comes, and stops early when it has what it wants.
 *
 *   generator MODEL_DIR [scheduling=on|off] [STOP_AFTER_PIECES] [LONG_TOKENS]
 *
 * It checks what it shows: the pieces of each input add up to its final text, which equals what
 * duet_generate returns for the same input and params; a generator stopped early keeps a prefix
 * of that text and says CANCELLED; a bad handle and a result asked for too early are refused.
 * Exit status 0 when every check holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define N_INPUTS 2
static const char *INPUTS[N_INPUTS] = {"translate English to German: The house is wonderful.", "summarize: a small test of pulling tokens"};

/* Pulls every event; pieces of input i are appended to texts[i]. Stops (cancels) after
 * `stop_after` TEXT events when it is not 0. Returns the number of TEXT events taken. */
static size_t drain(duet_generator *gen, char texts[N_INPUTS][4096], size_t stop_after) {
    size_t pieces = 0;
    for (;;) {
        duet_event ev;
        CHECK(duet_generator_next(gen, &ev));
        if (ev.kind == DUET_EVENT_KIND_DONE) return pieces;
        REQUIRE(ev.input_index < N_INPUTS, "event for input %zu", ev.input_index);
        if (ev.kind == DUET_EVENT_KIND_TEXT) {
            REQUIRE(ev.piece != NULL && strlen(ev.piece) == ev.piece_len, "a TEXT event's piece and its length agree");
            printf("[input %zu, token %d] %s\n", ev.input_index, ev.token_id, ev.piece);
            REQUIRE(strlen(texts[ev.input_index]) + ev.piece_len < 4096, "text fits");
            strcat(texts[ev.input_index], ev.piece);
            if (++pieces == stop_after) {
                printf("(enough: cancelling)\n");
                CHECK(duet_generator_cancel(gen));
            }
        } else {
            printf("[input %zu finished]\n", ev.input_index);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [scheduling=on|off] [STOP_AFTER_PIECES] [LONG_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *scheduling = argc > 2 && strcmp(argv[2], "scheduling=off") == 0 ? "off" : "continuous";
    size_t stop_after = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 2;
    /* The stopped-early generation's exact length: long, so that the cancel lands while the
     * scheduler is still decoding, within the model's positions (bart-tiny has 128). */
    long long long_tokens = argc > 4 ? strtoll(argv[4], NULL, 10) : 400;

    duet_model_options *options = NULL;
    CHECK(duet_model_options_new(&options));
    CHECK(duet_model_options_set_string(options, "scheduling", scheduling));
    duet_model *model = NULL;
    CHECK(duet_model_open(argv[1], options, &model));
    duet_model_options_free(options);
    duet_params *params = NULL;
    CHECK(duet_params_new(&params));
    CHECK(duet_params_set_int(params, "max_new_tokens", 16));

    /* The reference: one duet_generate call. */
    duet_result *reference = NULL;
    CHECK(duet_generate(model, INPUTS, N_INPUTS, params, NULL, NULL, &reference));

    /* 1. To the end: pieces add up to the result, which is duet_generate's. */
    duet_generator *gen = NULL;
    CHECK(duet_generator_new(model, INPUTS, N_INPUTS, params, &gen));
    duet_result *early = NULL;
    duet_status st = duet_generator_result(gen, &early);
    REQUIRE(st == DUET_STATUS_INVALID_ARGUMENT && early == NULL, "a result before DONE is refused (got %s)", duet_status_name((int32_t)st));
    char texts[N_INPUTS][4096] = {{0}};
    size_t pieces = drain(gen, texts, 0);
    duet_event again;
    CHECK(duet_generator_next(gen, &again));
    REQUIRE(again.kind == DUET_EVENT_KIND_DONE, "DONE again after DONE");
    duet_result *result = NULL;
    CHECK(duet_generator_result(gen, &result));
    for (size_t i = 0; i < N_INPUTS; i++) {
        const char *text = NULL, *want = NULL;
        CHECK(duet_result_text(result, i, 0, &text));
        CHECK(duet_result_text(reference, i, 0, &want));
        REQUIRE(strcmp(texts[i], text) == 0, "input %zu: pieces \"%s\" vs text \"%s\"", i, texts[i], text);
        REQUIRE(strcmp(text, want) == 0, "input %zu: generator \"%s\" vs duet_generate \"%s\"", i, text, want);
    }
    printf("pulled %zu pieces; both inputs equal duet_generate's output\n", pieces);
    duet_result_free(result);
    duet_generator_free(gen);

    /* 2. Stopped early: a prefix, and CANCELLED where the input had not finished. Exactly
     * (LONG_TOKENS) tokens, so that the cancel lands while the scheduler is still decoding. */
    duet_params *long_params = NULL;
    CHECK(duet_params_new(&long_params));
    CHECK(duet_params_set_int(long_params, "max_new_tokens", long_tokens));
    CHECK(duet_params_set_int(long_params, "min_new_tokens", long_tokens));
    duet_result *long_reference = NULL;
    CHECK(duet_generate(model, INPUTS, N_INPUTS, long_params, NULL, NULL, &long_reference));
    CHECK(duet_generator_new(model, INPUTS, N_INPUTS, long_params, &gen));
    char partial[N_INPUTS][4096] = {{0}};
    pieces = drain(gen, partial, stop_after);
    REQUIRE(pieces == stop_after, "no piece after the cancel (%zu taken, stop after %zu)", pieces, stop_after);
    CHECK(duet_generator_result(gen, &result));
    size_t cancelled = 0;
    for (size_t i = 0; i < N_INPUTS; i++) {
        const char *text = NULL, *want = NULL;
        duet_finish_reason reason;
        CHECK(duet_result_text(result, i, 0, &text));
        CHECK(duet_result_text(long_reference, i, 0, &want));
        CHECK(duet_result_finish_reason(result, i, 0, &reason));
        REQUIRE(strncmp(want, partial[i], strlen(partial[i])) == 0, "input %zu: \"%s\" is a prefix of \"%s\"", i, partial[i], want);
        REQUIRE(strncmp(want, text, strlen(text)) == 0, "input %zu: the result \"%s\" is a prefix of \"%s\"", i, text, want);
        cancelled += reason == DUET_FINISH_REASON_CANCELLED;
    }
    REQUIRE(cancelled > 0, "an input stopped early says CANCELLED");
    printf("stopped after %zu pieces: prefixes of the full output, %zu input(s) cancelled\n", pieces, cancelled);
    duet_result_free(result);
    duet_result_free(long_reference);
    duet_params_free(long_params);
    duet_generator_free(gen);

    /* 3. Misuse is refused, never a crash. */
    duet_event ev;
    EXPECT_STATUS(duet_generator_next(NULL, &ev), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_generator_next((duet_generator *)model, &ev), DUET_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(duet_generator_new(model, INPUTS, 0, params, &gen), DUET_STATUS_INVALID_ARGUMENT);
    duet_generator_free(NULL);

    /* 4. Freed before the end: the request leaves the scheduler, the model goes on serving. */
    CHECK(duet_generator_new(model, INPUTS, N_INPUTS, params, &gen));
    CHECK(duet_generator_next(gen, &ev));
    duet_generator_free(gen);
    CHECK(duet_generate(model, INPUTS, 1, params, NULL, NULL, &result));
    duet_result_free(result);

    duet_result_free(reference);
    duet_params_free(params);
    duet_model_free(model);
    printf("generator checks passed (scheduling %s)\n", scheduling);
    return 0;
}
