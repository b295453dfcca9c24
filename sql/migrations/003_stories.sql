-- 003_stories: online story clustering (pipeline/cluster.py).
--
-- Articles at stage 'processed' are assigned, one transaction each and in
-- publication order, to a story; the same transaction writes every table below
-- and moves the article to 'clustered', so a crash loses or repeats nothing.
-- A story's id is the id of the article that opened it: ids are then the same
-- whenever the same input is clustered in the same order, crash or no crash
-- (a sequence would not be: nextval() survives a rollback).

-- Stories. Vectors are sparse {feature: summed weight} maps truncated to the
-- top features (see cluster.py); they are the story's centroid.
-- merged_into is set when later evidence showed this story to be part of
-- another one: the old id stays here and resolves (in one hop) to the survivor.
CREATE TABLE news.stories (
    id                 bigint PRIMARY KEY,  -- = the founding article's id
    label              text NOT NULL,       -- a representative headline
    label_article_id   bigint NOT NULL,
    label_score        real NOT NULL DEFAULT 0,
    key_terms          text[] NOT NULL DEFAULT '{}',
    top_entities       jsonb NOT NULL DEFAULT '[]',  -- [{"id", "name", "type"}, ...]
    first_published_at timestamptz,
    last_published_at  timestamptz,
    article_count      integer NOT NULL DEFAULT 0,
    outlet_count       integer NOT NULL DEFAULT 0,
    text_vector        jsonb NOT NULL DEFAULT '{}',
    title_vector       jsonb NOT NULL DEFAULT '{}',
    entity_vector      jsonb NOT NULL DEFAULT '{}',
    merged_into        bigint REFERENCES news.stories ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (merged_into IS NULL OR merged_into <> id)
);
CREATE INDEX stories_last_published ON news.stories (last_published_at DESC)
    WHERE merged_into IS NULL;
CREATE INDEX stories_merged_into ON news.stories (merged_into) WHERE merged_into IS NOT NULL;

-- Article -> story. similarity is the score that placed it (1 for a story's
-- founder); duplicate_of links a near-duplicate (same wire text republished)
-- to the earlier article it copies, with the estimated Jaccard similarity.
CREATE TABLE news.story_articles (
    article_id        bigint PRIMARY KEY REFERENCES news.articles ON DELETE CASCADE,
    story_id          bigint NOT NULL REFERENCES news.stories,
    similarity        real NOT NULL,
    duplicate_of      bigint REFERENCES news.articles ON DELETE SET NULL,
    duplicate_jaccard real,
    assigned_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX story_articles_story ON news.story_articles (story_id, article_id);
CREATE INDEX story_articles_duplicate_of ON news.story_articles (duplicate_of)
    WHERE duplicate_of IS NOT NULL;

-- What happened to each story, in order.
--   created        an article opened the story (detail: why, e.g. no candidate)
--   article_added  an article joined (detail: score parts or the duplicate link)
--   merged         other_story_id was merged into story_id
--   split          article(s) in detail were moved from story_id to other_story_id
CREATE TABLE news.story_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    story_id       bigint NOT NULL REFERENCES news.stories,
    event          text NOT NULL CHECK (event IN ('created', 'article_added', 'merged', 'split')),
    article_id     bigint REFERENCES news.articles ON DELETE SET NULL,
    other_story_id bigint REFERENCES news.stories,
    detail         jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX story_events_story ON news.story_events (story_id, id);

-- Document frequencies, kept incrementally (one row per term / entity), and
-- the number of documents they were counted over. No refit ever reads the corpus.
CREATE TABLE news.term_df (
    term text PRIMARY KEY,
    df   integer NOT NULL
);
CREATE TABLE news.entity_df (
    entity_id bigint PRIMARY KEY,
    df        integer NOT NULL
);
CREATE TABLE news.cluster_counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO news.cluster_counters (name, value) VALUES ('documents', 0);

-- Candidate index: a story's top features ('t:' term, 'e:' entity id) with its
-- last activity, so a lookup touches only stories active in the time window
-- and its cost does not grow with the number of stories stored.
CREATE TABLE news.story_postings (
    feature     text NOT NULL,
    story_id    bigint NOT NULL REFERENCES news.stories ON DELETE CASCADE,
    last_active timestamptz NOT NULL,
    PRIMARY KEY (feature, story_id)
);
CREATE INDEX story_postings_active ON news.story_postings (feature, last_active);
CREATE INDEX story_postings_story ON news.story_postings (story_id);

-- Near-duplicate detection: a MinHash signature per article and its LSH band
-- buckets; articles sharing a bucket are compared signature to signature.
CREATE TABLE news.article_minhash (
    article_id bigint PRIMARY KEY REFERENCES news.articles ON DELETE CASCADE,
    signature  bigint[] NOT NULL
);
CREATE TABLE news.minhash_bands (
    band       smallint NOT NULL,
    bucket     bigint NOT NULL,
    article_id bigint NOT NULL REFERENCES news.articles ON DELETE CASCADE,
    PRIMARY KEY (band, bucket, article_id)
);

-- The clustering queue: processed articles in publication order (undated ones
-- by fetch time, never-dated ones last), without sorting the backlog.
CREATE INDEX articles_cluster_queue ON news.articles
    ((published_at IS NULL AND fetched_at IS NULL), (coalesce(published_at, fetched_at)), id)
    WHERE stage = 'processed';

-- A story id as it is now: a merged story's id resolves to the survivor.
CREATE FUNCTION news.resolve_story(story bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(s.merged_into, s.id) FROM news.stories AS s WHERE s.id = story
$$;
