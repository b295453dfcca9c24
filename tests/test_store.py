"""The frontier in Postgres: de-duplication, claims that never overlap, and the
hand-over of fetched pages to extraction."""

import threading
import time

import psycopg

from pipeline import store
from pipeline.crawl import MAX_QUEUED_PAGES, CrawlSummary, Extraction
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


def _fetched_page(conn, feed, url):
    """Fetch ``url`` (enqueued on ``feed``'s host) as the crawl would; the stored page."""
    _enqueue(conn, feed, url)
    job = store.claim_fetch(conn, None)
    page = store.save_fetched(
        conn,
        job,
        host_interval=0,
        final_url=url,
        status=200,
        content=b"<html><body><p>Bai bao</p></body></html>",
        content_type="text/html; charset=utf-8",
        charset="utf-8",
        etag=None,
        last_modified=None,
    )
    conn.commit()
    return page


def _fields(url):
    return store.ArticleFields(url, "Báo A", "Tiêu đề", None, "Nội dung", None, None, "vi")


def test_the_handed_over_page_equals_the_stored_one(conn):
    feeds = _sources(conn)
    page = _fetched_page(conn, feeds["Báo A"], "https://a.example.vn/1.html")
    assert page.publisher == "Báo A" and page.fetched_at is not None
    assert store.load_fetched(conn, page.id) == page


def test_only_the_first_outcome_of_a_page_is_recorded(conn, database_url):
    """Two workers extract one page (a crawl and a reprocess, say): one article, one outcome."""
    feeds = _sources(conn)
    page = _fetched_page(conn, feeds["Báo A"], "https://a.example.vn/1.html")
    with psycopg.connect(database_url, autocommit=True) as other:
        state, article_id = store.save_article(other, page, _fields(page.final_url))
        assert state == "extracted"
    assert store.save_article(conn, page, _fields(page.final_url)) is None
    assert not store.mark_not_article(conn, page, canonical_url=None, reason="listing")
    assert not store.mark_extract_error(conn, page, "boom")
    conn.commit()
    row = conn.execute(
        "SELECT f.state, f.article_id, (SELECT count(*) FROM news.articles)"
        "  FROM news.frontier f WHERE f.id = %s",
        (page.id,),
    ).fetchone()
    assert row == ("extracted", article_id, 1)


def test_a_duplicate_page_links_to_the_article_that_holds_its_url(conn):
    feeds = _sources(conn)
    first = _fetched_page(conn, feeds["Báo A"], "https://a.example.vn/1.html")
    second = _fetched_page(conn, feeds["Báo A"], "https://a.example.vn/1.html?from=home")
    _, article_id = store.save_article(conn, first, _fields("https://a.example.vn/1.html"))
    assert store.save_article(conn, second, _fields("https://a.example.vn/1.html")) == (
        "duplicate",
        article_id,
    )


def test_reprocess_requeues_pages_whose_extraction_crashed(conn):
    feeds = _sources(conn)
    page = _fetched_page(conn, feeds["Báo A"], "https://a.example.vn/1.html")
    assert store.mark_extract_error(conn, page, "RuntimeError('bug')")
    conn.commit()
    assert store.load_fetched(conn, page.id) is None
    assert store.requeue_extraction(conn, None) == 1
    assert store.load_fetched(conn, page.id) == page
    state, _ = store.save_article(conn, page, _fields(page.final_url))
    row = conn.execute(
        "SELECT state, error_reason FROM news.frontier WHERE id = %s", (page.id,)
    ).fetchone()
    assert state == "extracted" and row == ("extracted", None)


def test_extraction_holds_a_bounded_number_of_pages(conn, database_url):
    """Fetchers that outpace extraction wait instead of queueing pages without limit."""
    feeds = _sources(conn)
    total = MAX_QUEUED_PAGES + 8
    pages = [
        _fetched_page(conn, feeds["Báo A"], f"https://a.example.vn/{n}.html") for n in range(total)
    ]
    summary = CrawlSummary()
    with psycopg.connect(database_url) as blocker:
        # extraction records each outcome under the page's row lock: hold them all
        blocker.execute("SELECT id FROM news.frontier FOR UPDATE").fetchall()
        with Extraction(database_url, 0, summary) as extraction:
            submitter = threading.Thread(target=lambda: [extraction.submit(p) for p in pages])
            submitter.start()
            deadline = time.monotonic() + 10
            while extraction.in_flight < MAX_QUEUED_PAGES and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            queued, waiting = extraction.in_flight, submitter.is_alive()
            blocker.rollback()
            submitter.join(timeout=30)
            extraction.wait()
    assert queued == MAX_QUEUED_PAGES and waiting
    assert not submitter.is_alive()
    assert summary.not_articles + summary.articles_stored == total
