/*
 * Checks the C ABI from C: every misuse gets its specific status and a message, outputs are
 * untouched on failure, streamed pieces add up to the final text, a callback can cancel.
 *   abi_checks MODEL_DIR
 * Prints "N passed, M failed" and exits non-zero on any failure.
 */
#include <stdio.h>
#include <string.h>

#include "duet.h"

static int passed, failed;

#define EXPECT(cond, ...) do { if (cond) { passed++; } else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)
#define EXPECT_STATUS(call, want) do { duet_status got_ = (call); EXPECT(got_ == (want), "%s: got %s, want %s (%s)", #call, duet_status_name((int32_t)got_), duet_status_name((int32_t)(want)), duet_last_error_message()); } while (0)

struct collect { char text[4096]; size_t len; int cancel_after; int calls; };

static int32_t collect_pieces(void *user_data, size_t input, const char *piece, size_t len, int32_t token) {
    (void)input; (void)token;
    struct collect *c = user_data;
    if (c->len + len < sizeof c->text) { memcpy(c->text + c->len, piece, len); c->len += len; c->text[c->len] = 0; }
    EXPECT(strlen(piece) == len, "piece length %zu != strlen %zu", len, strlen(piece));
    c->calls++;
    return c->cancel_after > 0 && c->calls >= c->cancel_after;
}

struct steps { int calls; int stop_at; size_t total; };

static int32_t count_steps(void *user_data, size_t done, size_t total, size_t level) {
    struct steps *s = user_data;
    EXPECT(done == (size_t)s->calls && level == 1, "progress done %zu after %d calls, level %zu", done, s->calls, level);
    s->calls++;
    s->total = total;
    return s->stop_at >= 0 && s->calls > s->stop_at;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]); return 2; }
    const char *dir = argv[1];

    /* objects and NULLs */
    duet_params *params = NULL;
    EXPECT_STATUS(duet_params_new(NULL), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_params_new(&params), DUET_STATUS_OK);
    EXPECT_STATUS(duet_params_set_int(params, "no_such_key", 1), DUET_STATUS_UNKNOWN_PARAM);
    EXPECT(strstr(duet_last_error_message(), "max_new_tokens") != NULL, "unknown key message lists valid keys: %s", duet_last_error_message());
    EXPECT_STATUS(duet_params_set_int(params, "num_beams", 0), DUET_STATUS_INVALID_PARAM);
    EXPECT_STATUS(duet_params_set_float(params, "top_p", 1.5), DUET_STATUS_INVALID_PARAM);
    EXPECT_STATUS(duet_params_set_float(params, "temperature", -1.0), DUET_STATUS_INVALID_PARAM);
    EXPECT_STATUS(duet_params_set_string(params, "early_stopping", "sometimes"), DUET_STATUS_INVALID_PARAM);
    EXPECT_STATUS(duet_params_set_string(params, "num_beams", "\xff\xfe"), DUET_STATUS_INVALID_UTF8);
    EXPECT_STATUS(duet_params_set_int(NULL, "num_beams", 2), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_params_set_int(params, NULL, 2), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_params_set_int(params, "max_new_tokens", 12), DUET_STATUS_OK);
    duet_params_free(NULL);
    duet_model_free(NULL);
    duet_result_free(NULL);
    duet_string_free(NULL);
    duet_model_options_free(NULL);

    /* opening models */
    duet_model *model = (duet_model *)0x1;
    EXPECT_STATUS(duet_model_open("/nonexistent/model", NULL, &model), DUET_STATUS_MODEL_FILE_MISSING);
    EXPECT(model == (duet_model *)0x1, "output written on failure");
    EXPECT_STATUS(duet_model_open(NULL, NULL, &model), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_model_open("\xc3\x28", NULL, &model), DUET_STATUS_INVALID_UTF8);
    EXPECT_STATUS(duet_model_open(dir, NULL, NULL), DUET_STATUS_NULL_POINTER);
    duet_model_options *opts = NULL;
    EXPECT_STATUS(duet_model_options_new(&opts), DUET_STATUS_OK);
    EXPECT_STATUS(duet_model_options_set_string(opts, "layout", "diagonal"), DUET_STATUS_INVALID_PARAM);
    EXPECT_STATUS(duet_model_options_set_string(opts, "providers", "tpu"), DUET_STATUS_OK); /* parsed when opening */
    EXPECT_STATUS(duet_model_open(dir, opts, &model), DUET_STATUS_INVALID_PARAM);
    EXPECT_STATUS(duet_model_options_set_string(opts, "providers", "cuda,cpu"), DUET_STATUS_OK);
    EXPECT_STATUS(duet_model_options_set_string(opts, "layout", "split"), DUET_STATUS_OK);
    EXPECT_STATUS(duet_model_open(dir, opts, &model), DUET_STATUS_OK);
    const char *provider = NULL;
    EXPECT_STATUS(duet_model_execution_provider(model, &provider), DUET_STATUS_OK);
    EXPECT(provider && strcmp(provider, "CPUExecutionProvider") == 0, "fallback provider is %s", provider ? provider : "(null)");
    duet_model_free(model);
    EXPECT_STATUS(duet_model_options_set_bool(opts, "strict_providers", true), DUET_STATUS_OK);
    EXPECT_STATUS(duet_model_open(dir, opts, &model), DUET_STATUS_PROVIDER_UNAVAILABLE);
    duet_model_options_free(opts);
    EXPECT_STATUS(duet_model_open(dir, NULL, &model), DUET_STATUS_OK);

    /* generating */
    const char *good[] = {"The weather is nice today.", "你好，世界 🙂"};
    const char *bad_utf8[] = {"fine", "\xe4\xbd"};
    const char *with_null[] = {"fine", NULL};
    duet_result *result = (duet_result *)0x1;
    EXPECT_STATUS(duet_generate(NULL, good, 1, params, NULL, NULL, &result), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_generate(model, NULL, 1, params, NULL, NULL, &result), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_generate(model, good, 0, params, NULL, NULL, &result), DUET_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(duet_generate(model, bad_utf8, 2, params, NULL, NULL, &result), DUET_STATUS_INVALID_UTF8);
    EXPECT_STATUS(duet_generate(model, with_null, 2, params, NULL, NULL, &result), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_generate(model, good, 1, params, NULL, NULL, NULL), DUET_STATUS_NULL_POINTER);
    EXPECT(result == (duet_result *)0x1, "result written on failure");

    duet_params *small = NULL;
    duet_params_new(&small);
    duet_params_set_int(small, "max_input_tokens", 3);
    EXPECT_STATUS(duet_generate(model, good, 1, small, NULL, NULL, &result), DUET_STATUS_INPUT_TOO_LONG);
    duet_params_set_bool(small, "truncate_input", true);
    duet_params_set_int(small, "max_new_tokens", 4);
    EXPECT_STATUS(duet_generate(model, good, 1, small, NULL, NULL, &result), DUET_STATUS_OK);
    size_t in_tokens = 0; bool truncated = false;
    EXPECT_STATUS(duet_result_input_info(result, 0, &in_tokens, &truncated), DUET_STATUS_OK);
    EXPECT(truncated && in_tokens == 3, "truncation reported: %d, %zu tokens", truncated, in_tokens);
    duet_result_free(result);
    duet_params_free(small);

    /* streaming adds up to the final text */
    struct collect c = {0};
    EXPECT_STATUS(duet_generate(model, good, 1, params, collect_pieces, &c, &result), DUET_STATUS_OK);
    const char *text = NULL;
    EXPECT_STATUS(duet_result_text(result, 0, 0, &text), DUET_STATUS_OK);
    EXPECT(text && strcmp(text, c.text) == 0, "streamed \"%s\" != final \"%s\"", c.text, text ? text : "(null)");
    EXPECT_STATUS(duet_result_text(result, 1, 0, &text), DUET_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(duet_result_text(result, 0, 5, &text), DUET_STATUS_INVALID_ARGUMENT);
    char *json = NULL;
    EXPECT_STATUS(duet_result_to_json(result, &json), DUET_STATUS_OK);
    EXPECT(json && strstr(json, "\"results\"") != NULL, "json: %s", json ? json : "(null)");
    duet_string_free(json);
    duet_result_free(result);

    /* a callback cancels after its first piece */
    struct collect cancel = {0};
    cancel.cancel_after = 1;
    EXPECT_STATUS(duet_generate(model, good, 2, params, collect_pieces, &cancel, &result), DUET_STATUS_OK);
    duet_finish_reason reason = DUET_FINISH_REASON_EOS;
    EXPECT_STATUS(duet_result_finish_reason(result, 0, 0, &reason), DUET_STATUS_OK);
    EXPECT(reason == DUET_FINISH_REASON_CANCELLED, "finish reason after cancel: %d", (int)reason);
    EXPECT(cancel.calls == 1, "callback called %d times after cancelling", cancel.calls);
    duet_result_free(result);

    /* duet_generate_with: progress before every step, beam search's too; non-zero cancels */
    struct steps st = {0, 3, 0};
    duet_params *beam = NULL;
    EXPECT_STATUS(duet_params_new(&beam), DUET_STATUS_OK);
    duet_params_set_int(beam, "num_beams", 3);
    duet_params_set_int(beam, "max_new_tokens", 12);
    duet_params_set_int(beam, "min_new_tokens", 12);
    duet_callbacks progress_only = {NULL, count_steps, &st};
    EXPECT_STATUS(duet_generate_with(model, good, 1, beam, &progress_only, &result), DUET_STATUS_OK);
    EXPECT_STATUS(duet_result_finish_reason(result, 0, 0, &reason), DUET_STATUS_OK);
    EXPECT(reason == DUET_FINISH_REASON_CANCELLED, "beam search cancelled by progress: %d", (int)reason);
    EXPECT(st.calls == 4 && st.total == 12, "progress calls %d (want 4), total %zu (want 12)", st.calls, st.total);
    duet_result_free(result);
    st.stop_at = -1;
    st.calls = 0;
    EXPECT_STATUS(duet_generate_with(model, good, 1, beam, &progress_only, &result), DUET_STATUS_OK);
    EXPECT_STATUS(duet_result_finish_reason(result, 0, 0, &reason), DUET_STATUS_OK);
    EXPECT(reason != DUET_FINISH_REASON_CANCELLED && st.calls == 12, "uncancelled: reason %d, %d progress calls", (int)reason, st.calls);
    duet_result_free(result);
    EXPECT_STATUS(duet_generate_with(model, good, 1, beam, NULL, &result), DUET_STATUS_OK);
    duet_result_free(result);
    EXPECT_STATUS(duet_generate_with(model, good, 1, beam, &progress_only, NULL), DUET_STATUS_NULL_POINTER);
    duet_params_free(beam);

    EXPECT(strcmp(duet_status_name(9), "DUET_STATUS_MODEL_INVALID") == 0, "status name");
    EXPECT(strcmp(duet_status_name(12345), "DUET_STATUS_UNKNOWN") == 0, "unknown status name");

    duet_model_free(model);
    duet_params_free(params);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
