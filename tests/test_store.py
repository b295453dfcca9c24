"""The frontier in Postgres: de-duplication and claims that never overlap."""

import psycopg

from pipeline import store
from pipeline.feeds import FeedItem
from pipeline.sources import Source


def _sources(conn):
    feeds = store.sync_sources(
        conn,
        [
            Source("Báo A", "https://a.example.vn", ("https://a.example.vn/rss",)),
            Source("Báo B", "https://b.example.vn", ("https://b.example.vn/rss",)),
        ],
    )
    conn.commit()
    return {f.source_name: f for f in feeds}


def _enqueue(conn, feed, *urls):
    items = [(FeedItem(u, "t", None), u.split("/")[2]) for u in urls]
    n = store.enqueue(conn, items, source_id=feed.source_id, feed_id=feed.id)
    conn.commit()
    return n


def test_sync_sources_is_idempotent(conn):
    first = _sources(conn)
    second = _sources(conn)
    assert {k: v.id for k, v in first.items()} == {k: v.id for k, v in second.items()}
    assert conn.execute("SELECT count(*) FROM news.feeds").fetchone()[0] == 2


def test_enqueue_skips_known_urls_and_known_articles(conn):
    feeds = _sources(conn)
    a = feeds["Báo A"]
    assert _enqueue(conn, a, "https://a.example.vn/1.html", "https://a.example.vn/2.html") == 2
    assert _enqueue(conn, a, "https://a.example.vn/1.html", "https://a.example.vn/3.html") == 1
    conn.execute(
        "INSERT INTO news.articles (url, publisher, title, body) VALUES (%s, 'Báo A', 't', 'b')",
        ("https://a.example.vn/4.html",),
    )
    assert _enqueue(conn, a, "https://a.example.vn/4.html") == 0


def test_claims_never_overlap_and_lock_the_host(conn, database_url):
    feeds = _sources(conn)
    _enqueue(conn, feeds["Báo A"], "https://a.example.vn/1.html", "https://a.example.vn/2.html")
    _enqueue(conn, feeds["Báo B"], "https://b.example.vn/1.html")
    with psycopg.connect(database_url) as other:
        first = store.claim_fetch(conn, None)
        second = store.claim_fetch(other, None)
        # the second worker may not take another URL of the first worker's host
        assert first.host != second.host
        third_conn = psycopg.connect(database_url)
        assert store.claim_fetch(third_conn, None) is None
        third_conn.close()
        conn.rollback()  # a crashed worker: its URL and host are free again at once
        again = store.claim_fetch(conn, None)
        assert again is not None and again.host == first.host
        other.rollback()
    conn.rollback()


def test_host_interval_defers_the_next_claim(conn):
    feeds = _sources(conn)
    _enqueue(conn, feeds["Báo A"], "https://a.example.vn/1.html", "https://a.example.vn/2.html")
    job = store.claim_fetch(conn, None)
    store.set_host_next_fetch(conn, job.host, 30)
    store.mark_failed(conn, job.id, reason="http_404", detail="", status=404, retry_in=None)
    conn.commit()
    assert store.claim_fetch(conn, None) is None
    wait = store.seconds_until_due(conn, None)
    assert 25 < wait <= 30
    conn.rollback()


def test_source_filter_restricts_claims(conn):
    feeds = _sources(conn)
    _enqueue(conn, feeds["Báo A"], "https://a.example.vn/1.html")
    _enqueue(conn, feeds["Báo B"], "https://b.example.vn/1.html")
    job = store.claim_fetch(conn, [feeds["Báo B"].source_id])
    assert job.host == "b.example.vn"
    conn.rollback()
