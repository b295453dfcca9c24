-- Articles as analysts see them: one row per stored article with its publisher.
CREATE OR REPLACE VIEW news.v_articles AS
SELECT
    a.id            AS article_id,
    a.url,
    a.publisher,
    a.title,
    a.lead,
    a.body,
    a.author,
    a.published_at,
    a.fetched_at,
    a.language,
    a.stage
FROM news.articles AS a;
