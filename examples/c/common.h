/* Shared by the C examples: stop with duet's message when a call fails. */
#ifndef DUET_EXAMPLE_COMMON_H
#define DUET_EXAMPLE_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include "duet.h"

#define CHECK(call) do { duet_status st_ = (call); if (st_ != DUET_STATUS_OK) { \
    fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call, \
            duet_status_name((int32_t)st_), duet_last_error_message()); exit(1); } } while (0)

#define EXPECT_STATUS(call, want) do { duet_status st_ = (call); if (st_ != (want)) { \
    fprintf(stderr, "%s:%d: %s gave %s, expected %s\n", __FILE__, __LINE__, #call, \
            duet_status_name((int32_t)st_), duet_status_name((int32_t)(want))); exit(1); } } while (0)

#define REQUIRE(cond, ...) do { if (!(cond)) { fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } } while (0)
#endif
