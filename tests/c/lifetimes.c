/*
 * Lifetimes at the C ABI's edges, from C with threads:
 * - a model freed by one thread while another is inside duet_generate on it: the call finishes
 *   with its result, the free takes effect when it returns, and the handle is invalid at once;
 * - the same for a chat freed while a reply is streaming;
 * - failing calls (and duet_last_error_message) from a thread's key destructors, after the
 *   thread's own storage is gone, return their status instead of aborting the process.
 *   lifetimes MODEL_DIR
 * Prints "N passed, M failed" and exits non-zero on any failure.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "duet.h"

static int passed, failed;

#define EXPECT(cond, ...) do { if (cond) { passed++; } else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)
#define EXPECT_STATUS(call, want) do { duet_status got_ = (call); EXPECT(got_ == (want), "%s: got %s, want %s (%s)", #call, duet_status_name((int32_t)got_), duet_status_name((int32_t)(want)), duet_last_error_message()); } while (0)

/* A callback that, at its first piece, tells the main thread it is inside the call and waits
 * until the main thread has freed the object the call is using. */
struct rendezvous {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int inside, freed, pieces, returned;
    char text[4096];
    size_t len;
};

static int32_t wait_for_free(void *user_data, size_t input, const char *piece, size_t len, int32_t token) {
    (void)input; (void)token;
    struct rendezvous *r = user_data;
    pthread_mutex_lock(&r->lock);
    if (r->len + len < sizeof r->text) { memcpy(r->text + r->len, piece, len); r->len += len; r->text[r->len] = 0; }
    r->pieces++;
    r->inside = 1;
    pthread_cond_broadcast(&r->cond);
    while (!r->freed) pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* The call's thread says when it returns, so that a call that never streams cannot hang this. */
static void returned(struct rendezvous *r) {
    pthread_mutex_lock(&r->lock);
    r->returned = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void wait_inside_then_free(struct rendezvous *r, void (*free_it)(void *), void *object) {
    pthread_mutex_lock(&r->lock);
    while (!r->inside && !r->returned) pthread_cond_wait(&r->cond, &r->lock);
    EXPECT(r->inside && !r->returned, "the call returned before it streamed");
    pthread_mutex_unlock(&r->lock);
    free_it(object);
    pthread_mutex_lock(&r->lock);
    r->freed = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

struct generate_call {
    duet_model *model;
    duet_params *params;
    struct rendezvous *r;
    duet_status status;
    duet_result *result;
};

static void *generate_thread(void *arg) {
    struct generate_call *g = arg;
    const char *inputs[] = {"The museum will reopen next month after a long renovation."};
    g->status = duet_generate(g->model, inputs, 1, g->params, wait_for_free, g->r, &g->result);
    returned(g->r);
    return NULL;
}

struct chat_call {
    duet_chat *chat;
    struct rendezvous *r;
    duet_status status;
    duet_reply *reply;
};

static void *chat_thread(void *arg) {
    struct chat_call *c = arg;
    duet_callbacks callbacks = {0};
    callbacks.on_token = wait_for_free;
    callbacks.user_data = c->r;
    c->status = duet_chat_send(c->chat, "Hello, who are you?", &callbacks, &c->reply);
    returned(c->r);
    return NULL;
}

static void free_model(void *m) { duet_model_free(m); }
static void free_chat(void *c) { duet_chat_free(c); }

/* Key destructors run after the thread's Rust storage is gone. */
static pthread_key_t key;
static duet_status from_destructor[2];
static int destructor_message_ok;

static void destructor(void *value) {
    (void)value;
    from_destructor[0] = duet_params_set_int(NULL, "num_beams", 2);
    const char *message = duet_last_error_message();
    destructor_message_ok = message != NULL;
    duet_params *p = NULL;
    from_destructor[1] = duet_params_new(&p);
    duet_params_free(p);
}

static void *thread_with_key(void *arg) {
    (void)arg;
    duet_params_set_int(NULL, "num_beams", 2); /* the thread's error storage exists */
    pthread_setspecific(key, (void *)1);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]); return 2; }
    duet_params *params = NULL;
    EXPECT_STATUS(duet_params_new(&params), DUET_STATUS_OK);
    EXPECT_STATUS(duet_params_set_int(params, "max_new_tokens", 12), DUET_STATUS_OK);
    EXPECT_STATUS(duet_params_set_int(params, "min_new_tokens", 12), DUET_STATUS_OK);

    /* the reference: the same call, nobody freeing */
    duet_model *model = NULL;
    EXPECT_STATUS(duet_model_open(argv[1], NULL, &model), DUET_STATUS_OK);
    if (!model) return 1;
    const char *inputs[] = {"The museum will reopen next month after a long renovation."};
    duet_result *reference = NULL;
    EXPECT_STATUS(duet_generate(model, inputs, 1, params, NULL, NULL, &reference), DUET_STATUS_OK);
    const char *want = NULL;
    EXPECT_STATUS(duet_result_text(reference, 0, 0, &want), DUET_STATUS_OK);

    /* a model freed while a call is inside it */
    struct rendezvous r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, {0}, 0};
    struct generate_call g = {model, params, &r, DUET_STATUS_INTERNAL, NULL};
    pthread_t t;
    pthread_create(&t, NULL, generate_thread, &g);
    wait_inside_then_free(&r, free_model, model);
    char *info = NULL;
    EXPECT_STATUS(duet_model_info_json(model, &info), DUET_STATUS_INVALID_HANDLE);
    pthread_join(t, NULL);
    EXPECT_STATUS(g.status, DUET_STATUS_OK);
    const char *got = NULL;
    EXPECT_STATUS(duet_result_text(g.result, 0, 0, &got), DUET_STATUS_OK);
    EXPECT(got && want && strcmp(got, want) == 0, "after the free the call still gave \"%s\", want \"%s\"", got ? got : "(null)", want ? want : "(null)");
    EXPECT(strcmp(r.text, want ? want : "") == 0 && r.pieces > 1, "streamed \"%s\" (%d pieces)", r.text, r.pieces);
    EXPECT_STATUS(duet_generate(model, inputs, 1, params, NULL, NULL, &g.result), DUET_STATUS_INVALID_HANDLE);
    duet_model_free(model); /* a second free: ignored */
    duet_result_free(g.result);
    duet_result_free(reference);

    /* a chat freed while a reply streams */
    EXPECT_STATUS(duet_model_open(argv[1], NULL, &model), DUET_STATUS_OK);
    duet_chat *chat = NULL;
    EXPECT_STATUS(duet_chat_new(model, params, &chat), DUET_STATUS_OK);
    duet_model_free(model); /* the chat keeps what it needs */
    struct rendezvous rc = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, {0}, 0};
    struct chat_call c = {chat, &rc, DUET_STATUS_INTERNAL, NULL};
    pthread_create(&t, NULL, chat_thread, &c);
    wait_inside_then_free(&rc, free_chat, chat);
    size_t turns = 0;
    EXPECT_STATUS(duet_chat_num_turns(chat, &turns), DUET_STATUS_INVALID_HANDLE);
    pthread_join(t, NULL);
    EXPECT_STATUS(c.status, DUET_STATUS_OK);
    const char *reply = NULL;
    EXPECT_STATUS(duet_reply_text(c.reply, &reply), DUET_STATUS_OK);
    EXPECT(reply && strcmp(reply, rc.text) == 0, "reply \"%s\" != streamed \"%s\"", reply ? reply : "(null)", rc.text);
    duet_reply_free(c.reply);

    /* failing calls from a thread's key destructors */
    pthread_key_create(&key, destructor);
    pthread_create(&t, NULL, thread_with_key, NULL);
    pthread_join(t, NULL);
    EXPECT(from_destructor[0] == DUET_STATUS_NULL_POINTER, "from a key destructor: %s", duet_status_name((int32_t)from_destructor[0]));
    EXPECT(from_destructor[1] == DUET_STATUS_OK, "from a key destructor: %s", duet_status_name((int32_t)from_destructor[1]));
    EXPECT(destructor_message_ok, "duet_last_error_message returned NULL in a destructor");

    duet_params_free(params);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
