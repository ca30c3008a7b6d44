/*
 * sqlite3_interrupt() from another thread ends a running duet SQL function within a decoding
 * step, with SQLITE_INTERRUPT, and the connection works normally afterwards:
 *   interrupt_check EXTENSION MODEL_DIR
 * Exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include <sqlite3.h>

static int failures;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *interrupt_later(void *db) {
    struct timespec wait = {0, 300 * 1000 * 1000};
    nanosleep(&wait, NULL);
    sqlite3_interrupt(db);
    return NULL;
}

/* Runs `sql` with an interrupt 300 ms in: it must end with SQLITE_INTERRUPT, in under half of
   `alone` (what the generate call takes uninterrupted, measured first). */
static void expect_interrupted(sqlite3 *db, const char *what, const char *sql, double alone) {
    pthread_t t;
    pthread_create(&t, NULL, interrupt_later, db);
    double start = now_s();
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    double took = now_s() - start;
    pthread_join(t, NULL);
    if (rc != SQLITE_INTERRUPT) {
        fprintf(stderr, "FAIL %s: rc %d (%s), want SQLITE_INTERRUPT\n", what, rc, err ? err : "");
        failures++;
    } else if (took > alone / 2) {
        fprintf(stderr, "FAIL %s: interrupted after %.2f s\n", what, took);
        failures++;
    } else {
        printf("%s: interrupted after %.2f s\n", what, took);
    }
    sqlite3_free(err);
}

static double run_s(sqlite3 *db, const char *sql) {
    double start = now_s();
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "FAIL %s: %s\n", sql, err ? err : "");
        failures++;
    }
    sqlite3_free(err);
    return now_s() - start;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s EXTENSION MODEL_DIR\n", argv[0]); return 2; }
    sqlite3 *db = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
    sqlite3_enable_load_extension(db, 1);
    char *err = NULL;
    if (sqlite3_load_extension(db, argv[1], NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "loading %s: %s\n", argv[1], err ? err : "");
        return 1;
    }
    char sql[4096];
    snprintf(sql, sizeof sql, "SELECT duet_open('%s');", argv[2]);
    run_s(db, sql);
    const char *beam = "SELECT duet_generate('The museum will reopen next month.', "
                       "'{\"num_beams\": 4, \"max_new_tokens\": 2000, \"min_new_tokens\": 2000}');";
    double alone = run_s(db, beam);
    printf("beam search of 2000 tokens alone: %.2f s\n", alone);
    if (alone < 1.5) { fprintf(stderr, "FAIL: the uninterrupted call is too short (%.2f s) to tell\n", alone); failures++; }
    expect_interrupted(db, "duet_generate (beam search)", beam, alone);
    expect_interrupted(db, "duet_summarize",
                       "SELECT duet_summarize('The museum will reopen next month. The city approved a new budget.', "
                       "'{\"max_new_tokens\": 2000, \"min_new_tokens\": 2000, \"num_beams\": 4}');", alone);
    run_s(db, "SELECT duet_generate('Hello.', '{\"max_new_tokens\": 4}');"); /* the connection goes on */
    sqlite3_close(db);
    printf("%s\n", failures ? "interrupt checks FAILED" : "interrupt checks passed");
    return failures != 0;
}
