/*
 * Embeddings, reranking and the in-memory index:
 *   search MODEL_DIR INDEX_FILE
 */
#include <math.h>
#include <string.h>
#include "common.h"

static const char *passages[] = {
    "Scientists discovered a new species of frog in the rainforest.",
    "The train to the airport leaves every twenty minutes.",
    "科学家在森林里发现了一种新的青蛙。",
    "A team of young scientists found the small green frog near the river after the storm.",
    "The recipe calls for 2 cups of flour, 3 eggs and a pinch of salt.",
};
#define N (sizeof passages / sizeof passages[0])

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL_DIR INDEX_FILE\n", argv[0]); return 2; }
    const char *query = "Where did scientists discover a new frog?";
    duet_model *model = NULL;
    CHECK(duet_model_open(argv[1], NULL, &model));

    /* embeddings: unit vectors; the best cosine is what the index must return first */
    size_t dim = 0;
    CHECK(duet_model_embedding_dim(model, &dim));
    float *vectors = malloc(sizeof(float) * dim * (N + 1));
    CHECK(duet_embed(model, passages, N, NULL, vectors, dim * N));
    const char *q[] = {query};
    CHECK(duet_embed(model, q, 1, NULL, vectors + dim * N, dim));
    size_t best = 0;
    double best_cos = -2;
    for (size_t i = 0; i < N; i++) {
        double norm = 0, cos = 0;
        for (size_t d = 0; d < dim; d++) {
            norm += (double)vectors[i * dim + d] * vectors[i * dim + d];
            cos += (double)vectors[i * dim + d] * vectors[N * dim + d];
        }
        REQUIRE(fabs(norm - 1.0) < 1e-4, "embedding %zu has norm %f", i, sqrt(norm));
        if (cos > best_cos) { best_cos = cos; best = i; }
    }
    EXPECT_STATUS(duet_embed(model, passages, N, NULL, vectors, dim), DUET_STATUS_INVALID_ARGUMENT); /* too small */

    /* rerank: a batch gives the same scores as one passage at a time */
    double scores[N], one = 0;
    CHECK(duet_rerank(model, query, passages, N, NULL, scores));
    for (size_t i = 0; i < N; i++) {
        CHECK(duet_rerank(model, query, &passages[i], 1, NULL, &one));
        REQUIRE(fabs(one - scores[i]) < 1e-4, "passage %zu: %f batched, %f alone", i, scores[i], one);
        printf("rerank %+.4f  %s\n", scores[i], passages[i]);
    }
    const char *with_null[] = {passages[0], NULL};
    EXPECT_STATUS(duet_rerank(model, query, with_null, 2, NULL, scores), DUET_STATUS_NULL_POINTER);
    EXPECT_STATUS(duet_rerank(model, query, passages, 0, NULL, scores), DUET_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(duet_rerank(model, "  ", passages, N, NULL, scores), DUET_STATUS_INVALID_ARGUMENT);

    /* the index: search, rerank, save, load */
    duet_index *index = NULL;
    CHECK(duet_index_new(model, NULL, &index));
    for (size_t i = 0; i < N; i++) CHECK(duet_index_add(index, (int64_t)(10 + i), passages[i]));
    EXPECT_STATUS(duet_index_add(index, 10, "duplicate id"), DUET_STATUS_INVALID_ARGUMENT);
    int64_t ids[3];
    double hit_scores[3];
    size_t found = 0;
    CHECK(duet_index_search(index, query, 3, 0, ids, hit_scores, &found));
    REQUIRE(found == 3 && ids[0] == (int64_t)(10 + best), "top hit %lld, expected %zu", (long long)ids[0], 10 + best);
    REQUIRE(fabs(hit_scores[0] - best_cos) < 1e-4, "top score %f, cosine %f", hit_scores[0], best_cos);
    CHECK(duet_index_search(index, query, 2, 4, ids, hit_scores, &found));
    printf("reranked top hit: %lld (%.4f)\n", (long long)ids[0], hit_scores[0]);
    CHECK(duet_index_save(index, argv[2]));
    CHECK(duet_index_remove(index, 10));
    EXPECT_STATUS(duet_index_remove(index, 10), DUET_STATUS_INVALID_ARGUMENT);
    duet_index_free(index);

    duet_index *loaded = NULL;
    CHECK(duet_index_load(model, argv[2], NULL, &loaded));
    size_t len = 0;
    CHECK(duet_index_len(loaded, &len));
    REQUIRE(len == N, "loaded %zu entries", len);
    duet_index_free(loaded);

    FILE *f = fopen(argv[2], "r+b");
    fseek(f, 30, SEEK_SET);
    fputc('X', f);
    fclose(f);
    EXPECT_STATUS(duet_index_load(model, argv[2], NULL, &loaded), DUET_STATUS_INDEX_FILE);
    printf("corrupt file: %s\n", duet_last_error_message());

    free(vectors);
    duet_model_free(model);
    printf("search: ok\n");
    return 0;
}
