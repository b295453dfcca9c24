-- One row per configured source: is it being polled, does it deliver, and is
-- what it delivers usable? Read by the analyst page (plugins/) and logged by
-- the daily maintenance DAG (pipeline/maintenance.py).
--
--   last_success_at    the latest successful poll of any of its feeds
--   feeds_failing      feeds whose last poll failed (consecutive_failures > 0)
--   articles_24h       articles stored in the last 24 hours
--   attempts_24h       URLs fetched (or tried) in the last 24 hours, and
--   failures_24h       how many of them ended in 'failed' (will retry) or 'gone'
--   failure_reasons    those failures by reason, {"http_5xx": 3, ...}
--   dated_share_7d     share of the last 7 days' articles with a publication time,
--   body_share_7d      and with a non-empty body (NULL when there were none)
CREATE OR REPLACE VIEW news.v_source_health AS
WITH feed_stats AS (
    SELECT f.source_id,
           count(*)                                          AS feeds,
           count(*) FILTER (WHERE f.consecutive_failures > 0) AS feeds_failing,
           max(f.last_polled_at)                             AS last_polled_at,
           max(f.last_success_at)                            AS last_success_at
      FROM news.feeds AS f
     GROUP BY f.source_id
),
attempts AS (
    SELECT fr.source_id, fr.state, fr.error_reason
      FROM news.frontier AS fr
     WHERE fr.updated_at >= now() - interval '24 hours'
       AND fr.attempts > 0
),
attempt_stats AS (
    SELECT a.source_id,
           count(*)                                              AS attempts_24h,
           count(*) FILTER (WHERE a.state IN ('failed', 'gone')) AS failures_24h
      FROM attempts AS a
     GROUP BY a.source_id
),
reason_stats AS (
    SELECT r.source_id, jsonb_object_agg(r.reason, r.n) AS failure_reasons
      FROM (SELECT a.source_id, coalesce(a.error_reason, 'unknown') AS reason, count(*) AS n
              FROM attempts AS a
             WHERE a.state IN ('failed', 'gone')
             GROUP BY 1, 2) AS r
     GROUP BY r.source_id
),
article_stats AS (
    SELECT a.source_id,
           count(*) FILTER (WHERE a.extracted_at >= now() - interval '24 hours') AS articles_24h,
           count(*)                                                    AS articles_7d,
           count(*) FILTER (WHERE a.published_at IS NOT NULL)          AS dated_7d,
           -- octet_length reads the stored size without de-TOASTing the body
           count(*) FILTER (WHERE octet_length(a.body) > 0)            AS with_body_7d
      FROM news.articles AS a
     WHERE a.extracted_at >= now() - interval '7 days'
       AND a.source_id IS NOT NULL
     GROUP BY a.source_id
)
SELECT
    s.id                                   AS source_id,
    s.name                                 AS source,
    s.homepage,
    coalesce(fs.feeds, 0)                  AS feeds,
    coalesce(fs.feeds_failing, 0)          AS feeds_failing,
    fs.last_polled_at,
    fs.last_success_at,
    coalesce(ars.articles_24h, 0)          AS articles_24h,
    coalesce(ars.articles_7d, 0)           AS articles_7d,
    coalesce(ats.attempts_24h, 0)          AS attempts_24h,
    coalesce(ats.failures_24h, 0)          AS failures_24h,
    ats.failures_24h::float8 / nullif(ats.attempts_24h, 0)   AS failure_rate_24h,
    coalesce(rs.failure_reasons, '{}'::jsonb)                AS failure_reasons,
    ars.dated_7d::float8 / nullif(ars.articles_7d, 0)        AS dated_share_7d,
    ars.with_body_7d::float8 / nullif(ars.articles_7d, 0)    AS body_share_7d
FROM news.sources AS s
LEFT JOIN feed_stats AS fs ON fs.source_id = s.id
LEFT JOIN attempt_stats AS ats ON ats.source_id = s.id
LEFT JOIN reason_stats AS rs ON rs.source_id = s.id
LEFT JOIN article_stats AS ars ON ars.source_id = s.id;
