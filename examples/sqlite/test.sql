-- The duet SQLite extension on an FTS5 table: a keyword query, then its hits reranked by the
-- model with duet_rerank. run_test.sh runs it with the extension loaded and @model_dir, @query
-- bound (.parameter set), and hands the output to rerank_order, which recomputes everything with
-- the C API and compares:
--   expect_hits|IDS      the ids the keyword query must find (ascending)
--   hit|ID|BODY          each keyword hit
--   ranked|ID|SCORE      the hits ordered by duet_rerank, best first
--   embed|BYTES|HEX      duet_embed(@query)
--   generate|HEX         duet_generate(@query, json_params): beam search
--   sample|HEX           duet_generate(@query, json_params): seeded sampling
.bail on
.headers off
.mode list
.separator "|"

SELECT 'opened|' || json_extract(duet_open(@model_dir), '$.architecture');

-- porter stemming, so that 'frog' also finds "frogs"
CREATE VIRTUAL TABLE passages USING fts5(body, tokenize = 'porter unicode61');
INSERT INTO passages(rowid, body) VALUES
  (1, 'Scientists discovered a new species of frog in the rainforest.'),
  (2, 'The train to the airport leaves every twenty minutes.'),
  (3, 'A team of young scientists found the small green frog near the river after the storm.'),
  (4, 'The recipe calls for 2 cups of flour, 3 eggs and a pinch of salt.'),
  (5, 'Frogs lay their eggs in ponds, and the tadpoles grow legs in spring.'),
  (6, 'The museum opened a new hall about rainforest animals, from frogs to jaguars.'),
  (7, 'After the storm the river flooded the old market square.'),
  (8, 'The council voted to build a new library next to the station.');

SELECT 'expect_hits|1,3,5,6';
SELECT 'hit|' || rowid || '|' || body FROM passages WHERE passages MATCH 'frog' ORDER BY rowid;

-- The query a user writes: keyword search, reranked by the model.
SELECT 'ranked', rowid, printf('%.17g', score)
  FROM (SELECT rowid, duet_rerank(@query, body) AS score FROM passages WHERE passages MATCH 'frog')
 ORDER BY score DESC;

SELECT 'embed', length(duet_embed(@query)), hex(duet_embed(@query));
SELECT 'generate', hex(duet_generate(@query, '{"max_new_tokens": 6, "num_beams": 2, "early_stopping": true, "stop_strings": ["###"]}'));
SELECT 'sample', hex(duet_generate(@query, '{"do_sample": true, "seed": 7, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 8}'));
