-- Hybrid search in SQLite with duet: FTS5's BM25 and embedding similarity fused by reciprocal
-- rank (RRF: score = sum over both rankings of 1 / (60 + rank)), the top hits then reranked by a
-- seq2seq model. run_hybrid_test.sh runs it with the extension loaded, the corpus in `docs` and
-- @embedder, @reranker (model directories), @query (the user's words) and @fts_query (those
-- words lower-cased and OR'ed, as FTS5 barewords) bound.
.bail on
.headers off
.mode list
.separator "|"

SELECT 'embedder|' || json_extract(duet_register('minilm', @embedder), '$.kind');
SELECT 'reranker|' || json_extract(duet_register('reranker', @reranker), '$.kind');

-- The embedding is a generated column: duet_embed is deterministic, so SQLite allows it.
ALTER TABLE docs ADD COLUMN vec BLOB GENERATED ALWAYS AS (duet_embed(body, '{"model": "minilm", "truncate_input": true}')) VIRTUAL;
CREATE TABLE docs_vec(id INTEGER PRIMARY KEY, vec BLOB NOT NULL);
INSERT INTO docs_vec SELECT id, vec FROM docs;
CREATE VIRTUAL TABLE docs_fts USING fts5(body, content = 'docs', content_rowid = 'id', tokenize = 'porter unicode61');
INSERT INTO docs_fts(rowid, body) SELECT id, body FROM docs;

-- Top 5 by embedding alone: the query embedded once (a constant argument of a deterministic
-- function), every stored vector compared with duet_distance_cosine.
SELECT 'vector', id, printf('%.6f', 1 - duet_distance_cosine(vec, duet_embed(@query, '{"model": "minilm", "input_kind": "query"}')))
  FROM docs_vec
 ORDER BY duet_distance_cosine(vec, duet_embed(@query, '{"model": "minilm", "input_kind": "query"}'))
 LIMIT 5;

-- The hybrid query.
CREATE TEMP TABLE fused AS
WITH
  q(vec) AS MATERIALIZED (SELECT duet_embed(@query, '{"model": "minilm", "input_kind": "query"}')),
  keyword AS (SELECT rowid AS id, row_number() OVER (ORDER BY bm25(docs_fts)) AS r
                FROM docs_fts WHERE docs_fts MATCH @fts_query ORDER BY bm25(docs_fts) LIMIT 50),
  semantic AS (SELECT id, row_number() OVER (ORDER BY duet_distance_cosine(docs_vec.vec, q.vec)) AS r
                 FROM docs_vec, q ORDER BY r LIMIT 50),
  both_lists AS (SELECT id, r FROM keyword UNION ALL SELECT id, r FROM semantic)
SELECT id, sum(1.0 / (60 + r)) AS score FROM both_lists GROUP BY id ORDER BY score DESC, id LIMIT 10;

SELECT 'hybrid', f.id, substr(d.body, 1, instr(d.body, ':') - 1) FROM fused f JOIN docs d USING (id) ORDER BY f.score DESC, f.id;

-- The best 5 fused hits, reranked by the seq2seq model (p(query | passage)).
SELECT 'reranked', id, printf('%.6f', s)
  FROM (SELECT f.id, duet_rerank(@query, d.body, '{"model": "reranker", "truncate_input": true}') AS s
          FROM (SELECT id FROM fused ORDER BY score DESC, id LIMIT 5) f JOIN docs d USING (id))
 ORDER BY s DESC;
