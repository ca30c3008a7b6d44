/*
 * A streamed multi-turn conversation, then one-shot assist:
 *   chat MODEL_DIR [TURNS]
 */
#include <string.h>
#include "common.h"

struct stream { char text[8192]; size_t len; };

static int32_t on_token(void *user_data, size_t input, const char *piece, size_t len, int32_t token) {
    (void)input; (void)token;
    struct stream *s = user_data;
    if (s->len + len < sizeof s->text) { memcpy(s->text + s->len, piece, len); s->len += len; s->text[s->len] = 0; }
    fwrite(piece, 1, len, stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL_DIR [TURNS]\n", argv[0]); return 2; }
    int turns = argc > 2 ? atoi(argv[2]) : 8;
    duet_model *model = NULL;
    CHECK(duet_model_open(argv[1], NULL, &model));
    duet_params *params = NULL;
    CHECK(duet_params_new(&params));
    CHECK(duet_params_set_int(params, "max_new_tokens", 12));
    CHECK(duet_params_set_string(params, "system_prompt", "You answer briefly."));

    duet_chat *chat = NULL;
    CHECK(duet_chat_new(model, params, &chat));
    int64_t dropped_total = 0;
    for (int t = 0; t < turns; t++) {
        char message[128];
        snprintf(message, sizeof message, "Turn %d: what did the river do after the storm?", t);
        struct stream s = {{0}, 0};
        duet_callbacks callbacks = {on_token, NULL, &s};
        duet_reply *reply = NULL;
        printf("user: %s\nassistant: ", message);
        CHECK(duet_chat_send(chat, message, &callbacks, &reply));
        printf("\n");
        const char *text = NULL;
        int64_t dropped = 0;
        CHECK(duet_reply_text(reply, &text));
        CHECK(duet_reply_stat(reply, "dropped_turns", &dropped));
        REQUIRE(strcmp(text, s.text) == 0, "streamed \"%s\" but the reply is \"%s\"", s.text, text);
        dropped_total += dropped;
        duet_reply_free(reply);
    }
    size_t kept = 0;
    CHECK(duet_chat_num_turns(chat, &kept));
    printf("turns kept: %zu, dropped: %lld\n", kept, (long long)dropped_total);
    REQUIRE((int64_t)kept + dropped_total == turns, "every turn is kept or reported dropped");
    CHECK(duet_chat_reset(chat));
    CHECK(duet_chat_num_turns(chat, &kept));
    REQUIRE(kept == 0, "reset keeps %zu turns", kept);
    duet_chat_free(chat);

    duet_reply *answer = NULL;
    CHECK(duet_assist(model, "What is the capital of France?", params, NULL, &answer));
    const char *text = NULL;
    CHECK(duet_reply_text(answer, &text));
    printf("assist: %s\n", text);
    duet_reply_free(answer);
    EXPECT_STATUS(duet_assist(model, "", params, NULL, &answer), DUET_STATUS_INVALID_ARGUMENT);

    duet_params_free(params);
    duet_model_free(model);
    printf("chat: ok\n");
    return 0;
}
