-- Stories as analysts see them (pipeline/cluster.py keeps the tables current).

-- One row per live story (merged stories are left out: their ids resolve to
-- the survivor through news.resolve_story(id)).
CREATE OR REPLACE VIEW news.v_stories AS
SELECT
    s.id                 AS story_id,
    s.label,
    s.key_terms,
    s.top_entities,
    s.first_published_at,
    s.last_published_at,
    s.article_count,
    s.outlet_count,
    s.created_at,
    s.updated_at
FROM news.stories AS s
WHERE s.merged_into IS NULL;

-- One row per article in a story, with what placed it there.
CREATE OR REPLACE VIEW news.v_story_articles AS
SELECT
    sa.story_id,
    s.label              AS story_label,
    a.id                 AS article_id,
    a.url,
    a.title,
    a.publisher,
    a.published_at,
    sa.similarity,
    sa.duplicate_of,
    sa.duplicate_jaccard,
    sa.assigned_at
FROM news.story_articles AS sa
JOIN news.stories AS s ON s.id = sa.story_id
JOIN news.articles AS a ON a.id = sa.article_id;

-- How each story developed: articles and outlets per day (Asia/Ho_Chi_Minh
-- calendar days, the readers' day), undated articles left out.
CREATE OR REPLACE VIEW news.v_story_timeline AS
SELECT
    sa.story_id,
    (a.published_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS day,
    count(*)                                            AS articles,
    count(DISTINCT a.publisher)                         AS outlets,
    min(a.published_at)                                 AS first_published_at,
    max(a.published_at)                                 AS last_published_at
FROM news.story_articles AS sa
JOIN news.articles AS a ON a.id = sa.article_id
WHERE a.published_at IS NOT NULL
GROUP BY sa.story_id, (a.published_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date;
