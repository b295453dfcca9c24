-- Entity mentions as analysts read them: the mention, its entity and its article.
CREATE OR REPLACE VIEW news.v_entity_mentions AS
SELECT
    m.article_id,
    a.title         AS article_title,
    a.url,
    a.publisher,
    a.published_at,
    m.field,
    m.start_offset,
    m.end_offset,
    m.surface,
    e.id            AS entity_id,
    e.type          AS entity_type,
    e.canonical_name
FROM news.entity_mentions AS m
JOIN news.entities AS e ON e.id = m.entity_id
JOIN news.articles AS a ON a.id = m.article_id;

-- One row per article and entity: how often and how it was mentioned.
CREATE OR REPLACE VIEW news.v_article_entities AS
SELECT
    m.article_id,
    e.id                                         AS entity_id,
    e.type                                       AS entity_type,
    e.canonical_name,
    count(*)                                     AS mention_count,
    count(*) FILTER (WHERE m.field = 'title')    AS title_mentions,
    array_agg(DISTINCT m.surface)                AS surfaces,
    min(m.start_offset) FILTER (WHERE m.field = 'body') AS first_body_offset
FROM news.entity_mentions AS m
JOIN news.entities AS e ON e.id = m.entity_id
GROUP BY m.article_id, e.id, e.type, e.canonical_name;
