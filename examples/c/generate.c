/*
 * A small host program over duet's C API: open a model, set generation parameters,
 * stream the text as it is generated, then print every sequence with its finish reason.
 *
 *   generate MODEL_DIR [--set KEY=VALUE ...] TEXT [TEXT ...]
 *
 * Exit status: 0 on success, otherwise the duet_status of the failing call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet.h"

static int fail(const char *what, duet_status status) {
    fprintf(stderr, "%s failed: %s: %s\n", what, duet_status_name((int32_t)status), duet_last_error_message());
    return (int)status;
}

/* Prints each piece of text as it arrives; returning non-zero would cancel. */
static int32_t on_token(void *user_data, size_t input_index, const char *piece, size_t piece_len, int32_t token_id) {
    (void)token_id;
    size_t *pieces = user_data;
    (*pieces)++;
    printf("[stream %zu] %.*s\n", input_index, (int)piece_len, piece);
    return 0;
}

static const char *reason_name(duet_finish_reason r) {
    switch (r) {
    case DUET_FINISH_REASON_EOS: return "eos";
    case DUET_FINISH_REASON_LENGTH: return "length";
    case DUET_FINISH_REASON_STOP_STRING: return "stop_string";
    case DUET_FINISH_REASON_CANCELLED: return "cancelled";
    }
    return "?";
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR [--set KEY=VALUE ...] TEXT [TEXT ...]\n", argv[0]);
        return 2;
    }
    printf("duet %s (ABI %d.%d)\n", duet_version(), DUET_ABI_MAJOR, DUET_ABI_MINOR);

    duet_params *params = NULL;
    duet_status st = duet_params_new(&params);
    if (st != DUET_STATUS_OK) return fail("duet_params_new", st);

    const char **texts = calloc((size_t)argc, sizeof *texts);
    size_t n_texts = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            char *kv = argv[++i];
            char *eq = strchr(kv, '=');
            if (!eq) { fprintf(stderr, "--set %s: expected KEY=VALUE\n", kv); return 2; }
            *eq = '\0';
            st = duet_params_set_string(params, kv, eq + 1);
            if (st != DUET_STATUS_OK) return fail("duet_params_set_string", st);
        } else {
            texts[n_texts++] = argv[i];
        }
    }

    duet_model *model = NULL;
    st = duet_model_open(argv[1], NULL, &model);
    if (st != DUET_STATUS_OK) return fail("duet_model_open", st);

    char *info = NULL;
    if (duet_model_info_json(model, &info) == DUET_STATUS_OK) {
        printf("model: %s\n", info);
        duet_string_free(info);
    }

    size_t pieces = 0;
    duet_result *result = NULL;
    st = duet_generate(model, texts, n_texts, params, on_token, &pieces, &result);
    if (st != DUET_STATUS_OK) return fail("duet_generate", st);

    size_t n_inputs = 0;
    duet_result_num_inputs(result, &n_inputs);
    for (size_t i = 0; i < n_inputs; i++) {
        size_t n_seq = 0;
        duet_result_num_sequences(result, i, &n_seq);
        for (size_t j = 0; j < n_seq; j++) {
            const char *text = NULL;
            const int32_t *ids = NULL;
            size_t n_ids = 0;
            double score = 0;
            duet_finish_reason reason;
            duet_result_text(result, i, j, &text);
            duet_result_token_ids(result, i, j, &ids, &n_ids);
            duet_result_score(result, i, j, &score);
            duet_result_finish_reason(result, i, j, &reason);
            printf("[%zu.%zu] %s | %zu tokens | score %.4f | %s\n", i, j, text, n_ids, score, reason_name(reason));
        }
    }
    printf("streamed pieces: %zu\n", pieces);

    duet_result_free(result);
    duet_model_free(model);
    duet_params_free(params);
    free(texts);
    return 0;
}
