-- 002_nlp: the processing stage (pipeline/nlp.py, pipeline/ner.py, pipeline/process.py).
--
-- Written in the same transaction that moves news.articles.stage from
-- 'extracted' to 'processed', so an article has an article_nlp row and its
-- mentions exactly when its stage says it was processed.

-- One row per processed article. Offsets are character offsets (Python str
-- indices, i.e. code points) into the NFC form of news.articles.title / lead /
-- body; the extractor stores NFC, so they index the stored columns directly.
--
--   segmented_title / segmented_lead / segmented
--       the seed format: one sentence per line, the syllables of a word joined
--       by "_", punctuation as its own token; words are spelled canonically
--       (NFC, tone marks in the hoà/thuỷ style the models were trained on).
--   sentences  {"title": [[start, end], ...], "lead": [...], "body": [...]}
--   tokens     {"title": [[start, end, "POS"], ...], "lead": [...], "body": [...]}
--       one entry per word (multi-syllable words span their spaces); the word
--       itself is substr(<field>, start + 1, end - start).
--   "lead" is absent when the article has no lead.
CREATE TABLE news.article_nlp (
    article_id       bigint PRIMARY KEY REFERENCES news.articles ON DELETE CASCADE,
    nlp_version      text NOT NULL,
    segmented_title  text NOT NULL,
    segmented_lead   text,
    segmented        text NOT NULL,
    sentences        jsonb NOT NULL,
    tokens           jsonb NOT NULL,
    processed_at     timestamptz NOT NULL DEFAULT now()
);

-- Named entities across articles. The same (type, key) is the same entity:
-- key is pipeline.ner.canonical_key(type, canonical name): NFC, case-folded,
-- one tone-mark style, punctuation and spacing normalised, abbreviations and
-- gazetteer aliases unified ("Hòa Bình" = "Hoà Bình", "Hoa Kỳ" = "Mỹ").
-- aliases accumulates every surface form and canonical name seen.
-- first_seen_at / last_seen_at span the articles' published_at (extracted_at
-- when unknown).
CREATE TABLE news.entities (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type           text NOT NULL CHECK (type IN ('PER', 'LOC', 'ORG', 'MISC')),
    canonical_name text NOT NULL,
    key            text NOT NULL,
    aliases        text[] NOT NULL DEFAULT '{}',
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    mention_count  bigint NOT NULL DEFAULT 0,
    UNIQUE (type, key)
);

-- Every mention: which entity, where (field and offsets as in article_nlp), as written.
CREATE TABLE news.entity_mentions (
    article_id   bigint NOT NULL REFERENCES news.articles ON DELETE CASCADE,
    field        text NOT NULL CHECK (field IN ('title', 'lead', 'body')),
    start_offset integer NOT NULL,
    end_offset   integer NOT NULL,
    entity_id    bigint NOT NULL REFERENCES news.entities ON DELETE CASCADE,
    surface      text NOT NULL,
    PRIMARY KEY (article_id, field, start_offset),
    CHECK (end_offset > start_offset)
);
CREATE INDEX entity_mentions_entity ON news.entity_mentions (entity_id, article_id);
