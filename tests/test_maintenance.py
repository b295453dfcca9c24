"""Housekeeping on a real Postgres: backlog, ANALYZE, raw HTML pruning, the retry sweep
and the source-health view."""

from __future__ import annotations

import gzip
from datetime import timedelta

import psycopg
import pytest

from pipeline import fetch, maintenance, store
from pipeline.sources import Source

SOURCE = """
INSERT INTO news.sources (name, homepage) VALUES (%s, %s) RETURNING id
"""
FEED = """
INSERT INTO news.feeds (source_id, url, last_polled_at, last_success_at, consecutive_failures)
VALUES (%s, %s, now() - make_interval(hours => %s), now() - make_interval(hours => %s), %s)
"""
URL = """
INSERT INTO news.frontier (url, host, source_id, state, attempts, error_reason,
                           discovered_at, updated_at)
VALUES (%s, 'site.test', %s, %s, %s, %s,
        now() - make_interval(days => %s), now() - make_interval(days => %s))
RETURNING id
"""
RAW_PAGE = """
INSERT INTO news.raw_pages (frontier_id, final_url, http_status, html_gzip, html_bytes, fetched_at)
VALUES (%s, 'https://site.test/x', 200, %s, 13, now() - make_interval(days => %s))
"""
ARTICLE = """
INSERT INTO news.articles (url, source_id, publisher, title, body, published_at, stage,
                           extracted_at)
VALUES (%s, %s, 'site', 'Tiêu đề', %s, CASE WHEN %s THEN now() END, %s,
        now() - make_interval(hours => %s))
"""


def add_url(
    conn,
    n: int,
    source_id: int | None,
    state: str,
    *,
    attempts: int = 1,
    reason: str | None = None,
    age_days: float = 0,
) -> int:
    return conn.execute(
        URL, (f"https://site.test/{n}", source_id, state, attempts, reason, age_days, age_days)
    ).fetchone()[0]


def add_article(
    conn,
    n: int,
    source_id: int | None,
    *,
    body: str = "Nội dung.",
    dated: bool = True,
    stage: str = "extracted",
    hours_ago: float = 1,
) -> None:
    conn.execute(ARTICLE, (f"https://site.test/a{n}", source_id, body, dated, stage, hours_ago))


def test_transient_reasons_are_fetch_reasons() -> None:
    assert set(fetch.REASONS) >= maintenance.TRANSIENT_REASONS


def test_backlog_counts_unclustered_stages(conn: psycopg.Connection) -> None:
    for n, stage in enumerate(["extracted", "extracted", "processed", "clustered"]):
        add_article(conn, n, None, stage=stage)
    assert maintenance.backlog(conn) == maintenance.Backlog(to_process=2, to_cluster=1)


def test_vacuum_analyze_covers_every_news_table(conn: psycopg.Connection) -> None:
    tables = maintenance.vacuum_analyze(conn)
    assert {"articles", "frontier", "raw_pages", "stories"} <= set(tables)
    done = {
        row[0]
        for row in conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'news'"
            " AND last_analyze IS NOT NULL AND last_vacuum IS NOT NULL"
        )
    }
    assert done == set(tables)
    assert not conn.autocommit  # the caller's connection is handed back as it was


def test_prune_keeps_recent_pages_and_pages_awaiting_extraction(conn: psycopg.Connection) -> None:
    html = gzip.compress(b"<html></html>")
    kept_recent = add_url(conn, 1, None, "extracted")
    pruned = [add_url(conn, n, None, state) for n, state in [(2, "extracted"), (3, "not_article")]]
    waiting = add_url(conn, 4, None, "fetched")
    crashed = add_url(conn, 5, None, "gone", reason="extract_error")
    for page, age in [
        (kept_recent, 1),
        (pruned[0], 40),
        (pruned[1], 40),
        (waiting, 40),
        (crashed, 40),
    ]:
        conn.execute(RAW_PAGE, (page, html, age))
    conn.commit()

    result = maintenance.prune_raw_pages(conn, timedelta(days=30), batch_size=1)

    assert result.pages == 2
    assert result.stored_bytes == 2 * len(html)
    left = {row[0] for row in conn.execute("SELECT frontier_id FROM news.raw_pages")}
    assert left == {kept_recent, waiting, crashed}
    frontier = conn.execute("SELECT count(*) FROM news.frontier").fetchone()[0]
    assert frontier == 5  # only HTML goes
    assert maintenance.prune_raw_pages(conn, timedelta(days=30)).pages == 0


def test_retry_sweep_requeues_young_transient_failures_only(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO news.hosts (host) VALUES ('site.test')")
    source = conn.execute(SOURCE, ("Site", "https://site.test/")).fetchone()[0]
    retried = add_url(conn, 1, source, "gone", attempts=4, reason="http_5xx", age_days=1)
    add_url(conn, 2, source, "gone", attempts=1, reason="http_404", age_days=1)
    add_url(conn, 3, source, "gone", attempts=4, reason="timeout", age_days=10)
    add_url(conn, 4, source, "extracted", attempts=1, age_days=1)
    conn.commit()

    assert maintenance.retry_transient_failures(conn, timedelta(days=3)) == {"http_5xx": 1}

    state, attempts = conn.execute(
        "SELECT state, attempts FROM news.frontier WHERE id = %s", (retried,)
    ).fetchone()
    assert (state, attempts) == ("failed", 4)  # one more attempt, history kept
    with conn.transaction():
        job = store.claim_fetch(conn, [source])  # the next crawl pass takes it
    assert job is not None and job.id == retried
    assert maintenance.retry_transient_failures(conn, timedelta(days=3)) == {}


def test_source_health_figures(conn: psycopg.Connection) -> None:
    store.sync_sources(
        conn,
        [
            Source(name="Tin A", homepage="https://a.test/", feeds=("https://a.test/rss",)),
            Source(name="Báo B", homepage="https://b.test/", feeds=("https://b.test/rss",)),
        ],
    )
    ids = dict(conn.execute("SELECT name, id FROM news.sources"))
    a, b = ids["Tin A"], ids["Báo B"]
    conn.execute("DELETE FROM news.feeds")
    conn.execute(FEED, (a, "https://a.test/rss", 1, 1, 0))
    conn.execute(FEED, (b, "https://b.test/rss", 1, 30, 3))
    # Tin A: 4 articles this week, 3 today; one undated, one without a body
    add_article(conn, 1, a, hours_ago=1)
    add_article(conn, 2, a, hours_ago=2, dated=False)
    add_article(conn, 3, a, hours_ago=3, body="")
    add_article(conn, 4, a, hours_ago=72)
    add_article(conn, 5, a, hours_ago=24 * 9)  # outside the 7-day window
    # Báo B: 4 URLs tried today, 3 failed
    for n, (state, reason) in enumerate(
        [("extracted", None), ("failed", "timeout"), ("gone", "http_404"), ("gone", "http_404")]
    ):
        add_url(conn, 10 + n, b, state, reason=reason)
    add_url(conn, 20, b, "gone", reason="http_5xx", age_days=3)  # not today
    conn.commit()

    health = {row.source: row for row in maintenance.source_health(conn)}

    tin_a, bao_b = health["Tin A"], health["Báo B"]
    assert (tin_a.articles_24h, tin_a.articles_7d) == (3, 4)
    assert tin_a.dated_share_7d == pytest.approx(0.75)
    assert tin_a.body_share_7d == pytest.approx(0.75)
    assert tin_a.feeds_failing == 0 and tin_a.failure_rate_24h is None
    assert (bao_b.attempts_24h, bao_b.failures_24h) == (4, 3)
    assert bao_b.failure_rate_24h == pytest.approx(0.75)
    assert bao_b.failure_reasons == {"timeout": 1, "http_404": 2}
    assert bao_b.dated_share_7d is None and bao_b.articles_24h == 0
    assert bao_b.last_success_at < tin_a.last_success_at
    assert maintenance.unhealthy(tin_a) == []
    assert maintenance.unhealthy(bao_b) == [
        "every feed failing",
        "no articles in 24 h",
        "75% of fetches failed",
    ]
    text = maintenance.format_health(list(health.values()))
    assert "Báo B" in text and "http_404 ×2" in text
