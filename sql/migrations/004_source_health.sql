-- 004_source_health: indexes behind news.v_source_health (sql/views/040_source_health.sql).
--
-- The health view looks at the last day's fetch attempts and the last week's
-- arrivals of each source. Without these indexes each look (the analyst page,
-- the daily maintenance log) would read the whole frontier and every article.
-- articles.extracted_at is written once per article; frontier.updated_at
-- changes on each attempt, which already rewrites the row's other index entries.

CREATE INDEX articles_extracted_at ON news.articles (extracted_at);
CREATE INDEX frontier_updated_at ON news.frontier (updated_at);
