"""Crawl-side persistence: sources, feeds, the frontier, raw pages and articles.

Every function takes an open connection and leaves transaction control to the
caller, so one unit of work (claim a URL, fetch it, record the outcome) commits
or rolls back as a whole. Work is claimed with ``FOR UPDATE SKIP LOCKED``: a
crashed worker's transaction rolls back and its rows are free again at once,
and several workers (threads, processes, Airflow tasks) share a queue without
ever taking the same row.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pipeline.feeds import FeedItem
from pipeline.sources import Source

# --- sources and feeds ---------------------------------------------------------

UPSERT_SOURCE = """
INSERT INTO news.sources (name, homepage, settings)
VALUES (%(name)s, %(homepage)s, %(settings)s)
ON CONFLICT (name) DO UPDATE
   SET homepage = EXCLUDED.homepage, settings = EXCLUDED.settings, updated_at = now()
RETURNING id
"""

UPSERT_FEED = """
INSERT INTO news.feeds (source_id, url, kind) VALUES (%s, %s, %s)
ON CONFLICT (url) DO UPDATE SET source_id = EXCLUDED.source_id
RETURNING id, etag, last_modified
"""


@dataclass(frozen=True)
class FeedRow:
    id: int
    source_id: int
    source_name: str
    url: str
    etag: str | None
    last_modified: str | None


def sync_sources(conn: psycopg.Connection, sources: Sequence[Source]) -> list[FeedRow]:
    """Upsert the sources and their feeds; returns the feeds to poll, in file order."""
    feeds: list[FeedRow] = []
    for source in sources:
        settings = {
            "categories": list(source.categories),
            "sitemaps": list(source.sitemaps),
            "archive_url_pattern": source.archive_url_pattern,
            "min_host_interval": source.min_host_interval,
        }
        params = {"name": source.name, "homepage": source.homepage, "settings": Jsonb(settings)}
        (source_id,) = conn.execute(UPSERT_SOURCE, params).fetchone()
        for url in source.feeds:
            feed_id, etag, last_modified = conn.execute(
                UPSERT_FEED, (source_id, url, "rss")
            ).fetchone()
            feeds.append(FeedRow(feed_id, source_id, source.name, url, etag, last_modified))
    return feeds


RECORD_FEED_SUCCESS = """
UPDATE news.feeds
   SET last_polled_at = now(), last_success_at = now(), last_status = %(status)s,
       etag = coalesce(%(etag)s, etag), last_modified = coalesce(%(last_modified)s, last_modified),
       last_error = %(problem)s, consecutive_failures = 0, items_seen = items_seen + %(items)s
 WHERE id = %(id)s
"""

RECORD_FEED_FAILURE = """
UPDATE news.feeds
   SET last_polled_at = now(), last_status = %(status)s, last_error = %(error)s,
       consecutive_failures = consecutive_failures + 1
 WHERE id = %(id)s
"""


def record_feed_success(
    conn: psycopg.Connection,
    feed_id: int,
    *,
    status: int,
    etag: str | None,
    last_modified: str | None,
    items: int,
    problem: str | None = None,
) -> None:
    """A poll that worked (304 included); ``problem`` notes a malformed-but-usable feed."""
    conn.execute(
        RECORD_FEED_SUCCESS,
        {
            "id": feed_id,
            "status": status,
            "etag": etag,
            "last_modified": last_modified,
            "items": items,
            "problem": problem,
        },
    )


def record_feed_failure(
    conn: psycopg.Connection, feed_id: int, *, status: int | None, error: str
) -> None:
    conn.execute(RECORD_FEED_FAILURE, {"id": feed_id, "status": status, "error": error})


# --- frontier: discovering URLs ---------------------------------------------------

ENSURE_HOSTS = """
INSERT INTO news.hosts (host) SELECT DISTINCT unnest(%s::text[])
ON CONFLICT (host) DO NOTHING
"""

# A URL is new unless the frontier already has it or an article already has it
# as its canonical URL (the feed links the canonical page of a mobile copy we saw).
ENQUEUE = """
INSERT INTO news.frontier
       (url, host, source_id, feed_id, discovered_via, title_hint, published_hint)
SELECT i.url, i.host, %(source_id)s, %(feed_id)s, %(via)s, i.title, i.published
  FROM unnest(%(urls)s::text[], %(hosts)s::text[], %(titles)s::text[],
              %(published)s::timestamptz[]) AS i(url, host, title, published)
 WHERE NOT EXISTS (SELECT 1 FROM news.articles a WHERE a.url = i.url)
ON CONFLICT (url) DO NOTHING
RETURNING id
"""

RECORD_REJECTED = """
INSERT INTO news.frontier
       (url, host, source_id, feed_id, discovered_via, title_hint, state, error_reason,
        error_detail)
VALUES (%(url)s, %(host)s, %(source_id)s, %(feed_id)s, %(via)s, %(title)s, 'gone',
        %(reason)s, %(detail)s)
ON CONFLICT (url) DO NOTHING
RETURNING id
"""


def enqueue(
    conn: psycopg.Connection,
    items: Sequence[tuple[FeedItem, str]],
    *,
    source_id: int | None,
    feed_id: int | None,
    via: str = "rss",
) -> int:
    """Add crawlable items (with their hosts) to the frontier; returns how many were new."""
    if not items:
        return 0
    hosts = [host for _, host in items]
    conn.execute(ENSURE_HOSTS, (hosts,))
    params = {
        "source_id": source_id,
        "feed_id": feed_id,
        "via": via,
        "urls": [item.url for item, _ in items],
        "hosts": hosts,
        "titles": [item.title for item, _ in items],
        "published": [item.published_at for item, _ in items],
    }
    return len(conn.execute(ENQUEUE, params).fetchall())


def record_rejected(
    conn: psycopg.Connection,
    item: FeedItem,
    *,
    host: str,
    reason: str,
    detail: str,
    source_id: int | None,
    feed_id: int | None,
    via: str = "rss",
) -> bool:
    """Record a link we will never fetch (bad scheme, off-site), so it is accounted for."""
    row = conn.execute(
        RECORD_REJECTED,
        {
            "url": item.url,
            "host": host,
            "source_id": source_id,
            "feed_id": feed_id,
            "via": via,
            "title": item.title,
            "reason": reason,
            "detail": detail,
        },
    ).fetchone()
    return row is not None


# --- frontier: fetching --------------------------------------------------------------


@dataclass(frozen=True)
class FetchJob:
    id: int
    url: str
    host: str
    attempts: int
    source_id: int | None


# The claim locks a host that is free (no worker — thread, process or Airflow
# task — is fetching from it, and its politeness interval has passed) and has due
# URLs, then that host's oldest due URL. Picking the host first keeps the claim
# cheap however many URLs wait on a busy host; hosts fetched longest ago come
# first, which rotates the work across publishers.
CLAIM_FETCH = """
WITH free_host AS (
    SELECT h.host
      FROM news.hosts h
     WHERE h.next_fetch_at <= now()
       -- a scalar subquery (not EXISTS, which the planner turns into a join over
       -- every due URL) probes the index once per host
       AND (SELECT f.id FROM news.frontier f
             WHERE f.host = h.host
               AND f.state IN ('discovered', 'failed')
               AND f.next_attempt_at <= now()
               AND (%(source_ids)s::bigint[] IS NULL
                    OR f.source_id = ANY(%(source_ids)s::bigint[]))
             LIMIT 1) IS NOT NULL
     ORDER BY h.next_fetch_at, h.host
     LIMIT 1
       FOR UPDATE SKIP LOCKED
)
SELECT url.*
  FROM free_host
 CROSS JOIN LATERAL (
       SELECT f.id, f.url, f.host, f.attempts, f.source_id
         FROM news.frontier f
        WHERE f.host = free_host.host
          AND f.state IN ('discovered', 'failed')
          AND f.next_attempt_at <= now()
          AND (%(source_ids)s::bigint[] IS NULL
               OR f.source_id = ANY(%(source_ids)s::bigint[]))
        ORDER BY f.next_attempt_at, f.id
        LIMIT 1
          FOR UPDATE OF f SKIP LOCKED
       ) AS url
"""

# When nothing is claimable: is there work due soon (a host cooling down, a retry
# scheduled in a few seconds), and in how many seconds? (<= 0: due now, but locked)
NEXT_DUE = """
SELECT extract(epoch FROM min(greatest(h.next_fetch_at, due.first)) - now())::float8
  FROM news.hosts h
 CROSS JOIN LATERAL (
       SELECT min(f.next_attempt_at) AS first
         FROM news.frontier f
        WHERE f.host = h.host
          AND f.state IN ('discovered', 'failed')
          AND (%(source_ids)s::bigint[] IS NULL OR f.source_id = ANY(%(source_ids)s::bigint[]))
       ) AS due
 WHERE due.first IS NOT NULL
"""

COUNT_WAITING = """
SELECT count(*) FROM news.frontier
 WHERE state IN ('discovered', 'failed')
   AND (%(source_ids)s::bigint[] IS NULL OR source_id = ANY(%(source_ids)s::bigint[]))
"""

SET_HOST_NEXT_FETCH = """
UPDATE news.hosts SET next_fetch_at = now() + make_interval(secs => %s) WHERE host = %s
"""


def claim_fetch(conn: psycopg.Connection, source_ids: Sequence[int] | None) -> FetchJob | None:
    """Lock one due URL and its host for this transaction, or None if none is free now.

    Call inside a transaction: the locks last until it commits or rolls back.
    """
    with conn.cursor(row_factory=class_row(FetchJob)) as cur:
        return cur.execute(CLAIM_FETCH, {"source_ids": _ids(source_ids)}).fetchone()


def seconds_until_due(conn: psycopg.Connection, source_ids: Sequence[int] | None) -> float | None:
    """None when no URL waits at all; otherwise seconds until the earliest one is due."""
    return conn.execute(NEXT_DUE, {"source_ids": _ids(source_ids)}).fetchone()[0]


def count_waiting(conn: psycopg.Connection, source_ids: Sequence[int] | None) -> int:
    return conn.execute(COUNT_WAITING, {"source_ids": _ids(source_ids)}).fetchone()[0]


def set_host_next_fetch(conn: psycopg.Connection, host: str, delay_seconds: float) -> None:
    conn.execute(SET_HOST_NEXT_FETCH, (delay_seconds, host))


# One round trip while the host is locked: the host's next slot, the raw page
# and the URL's new state.
SAVE_FETCHED = """
WITH host AS (
    UPDATE news.hosts SET next_fetch_at = now() + make_interval(secs => %(host_interval)s)
     WHERE host = %(host)s
), raw AS (
    INSERT INTO news.raw_pages
           (frontier_id, final_url, http_status, content_type, charset, etag, last_modified,
            html_gzip, html_bytes)
    VALUES (%(id)s, %(final_url)s, %(status)s, %(content_type)s, %(charset)s, %(etag)s,
            %(last_modified)s, %(html_gzip)s, %(html_bytes)s)
    ON CONFLICT (frontier_id) DO UPDATE
       SET final_url = EXCLUDED.final_url, http_status = EXCLUDED.http_status,
           content_type = EXCLUDED.content_type, charset = EXCLUDED.charset,
           etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified,
           html_gzip = EXCLUDED.html_gzip, html_bytes = EXCLUDED.html_bytes, fetched_at = now()
    RETURNING fetched_at
)
UPDATE news.frontier f
   SET state = 'fetched', attempts = attempts + 1, http_status = %(status)s,
       final_url = %(final_url)s, error_reason = %(note)s, error_detail = NULL,
       updated_at = now()
 WHERE id = %(id)s
RETURNING (SELECT fetched_at FROM raw), title_hint, published_hint,
          (SELECT name FROM news.sources s WHERE s.id = f.source_id)
"""

MARK_FAILED = """
UPDATE news.frontier
   SET state = %(state)s, attempts = attempts + 1, http_status = %(status)s,
       error_reason = %(reason)s, error_detail = %(detail)s,
       next_attempt_at = now() + make_interval(secs => %(retry_in)s), updated_at = now()
 WHERE id = %(id)s
"""

#: gzip level of stored raw HTML. Compression runs in the fetch loop for every
#: page, so its CPU is the crawl's: on the saved real pages in ../shared/data/pages
#: (182 kB on average) level 1 costs 1.2 ms a page and shrinks them 4.4x, level 6
#: (zlib's default) 2.9 ms for 5.3x. Raw pages are pruned after a while
#: (``vnnews_maintenance``), so the 20% of extra bytes is the cheaper side.
GZIP_LEVEL = 1


def save_fetched(
    conn: psycopg.Connection,
    job: FetchJob,
    *,
    host_interval: float,
    final_url: str,
    status: int,
    content: bytes,
    content_type: str | None,
    charset: str | None,
    etag: str | None,
    last_modified: str | None,
    note: str | None = None,
) -> FetchedPage:
    """Store the raw page, move the URL to 'fetched' (``note``: e.g. 'truncated') and
    schedule the host's next request ``host_interval`` seconds from now.

    Returns the page as extraction needs it, so that it can be handed over
    without being read back.
    """
    fetched_at, title_hint, published_hint, publisher = conn.execute(
        SAVE_FETCHED,
        {
            "id": job.id,
            "host": job.host,
            "host_interval": host_interval,
            "final_url": final_url,
            "status": status,
            "content_type": content_type,
            "charset": charset,
            "etag": etag,
            "last_modified": last_modified,
            "html_gzip": gzip.compress(content, GZIP_LEVEL),
            "html_bytes": len(content),
            "note": note,
        },
    ).fetchone()
    return FetchedPage(
        job.id,
        final_url,
        content,
        content_type,
        fetched_at,
        title_hint,
        published_hint,
        job.source_id,
        publisher,
    )


def mark_failed(
    conn: psycopg.Connection,
    job_id: int,
    *,
    reason: str,
    detail: str,
    status: int | None,
    retry_in: timedelta | None,
) -> None:
    """Record a failed attempt: retried after ``retry_in``, or 'gone' for good if None."""
    conn.execute(
        MARK_FAILED,
        {
            "id": job_id,
            "state": "failed" if retry_in is not None else "gone",
            "status": status,
            "reason": reason,
            "detail": detail[:1000],
            "retry_in": retry_in.total_seconds() if retry_in is not None else 0,
        },
    )


# --- extraction ------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedPage:
    """A fetched page on its way to extraction, with what the feed said about it."""

    id: int
    final_url: str
    content: bytes
    content_type: str | None
    fetched_at: datetime
    title_hint: str | None
    published_hint: datetime | None
    source_id: int | None
    publisher: str | None


LOAD_FETCHED = """
SELECT f.id, r.final_url, r.html_gzip, r.content_type, r.fetched_at, f.title_hint,
       f.published_hint, f.source_id, s.name AS publisher
  FROM news.frontier f
  JOIN news.raw_pages r ON r.frontier_id = f.id
  LEFT JOIN news.sources s ON s.id = f.source_id
 WHERE f.id = %(id)s AND f.state = 'fetched'
"""

FETCHED_PAGE_IDS = """
SELECT id FROM news.frontier
 WHERE state = 'fetched'
   AND (%(source_ids)s::bigint[] IS NULL OR source_id = ANY(%(source_ids)s::bigint[]))
 ORDER BY id
"""


def load_fetched(conn: psycopg.Connection, page_id: int) -> FetchedPage | None:
    """A stored page awaiting extraction, or None if it is no longer waiting.

    Nothing is locked: the statements that record the outcome (save_article,
    mark_not_article, mark_extract_error) take the page only if it is still
    'fetched', so of two workers extracting one page only the first one writes.
    """
    row = conn.execute(LOAD_FETCHED, {"id": page_id}).fetchone()
    if row is None:
        return None
    page_id, final_url, html_gzip, *rest = row
    return FetchedPage(page_id, final_url, gzip.decompress(html_gzip), *rest)


def fetched_page_ids(conn: psycopg.Connection, source_ids: Sequence[int] | None) -> list[int]:
    """Pages stored but not yet extracted (an interrupted pass, or a reprocess)."""
    return [r[0] for r in conn.execute(FETCHED_PAGE_IDS, {"source_ids": _ids(source_ids)})]


@dataclass(frozen=True)
class ArticleFields:
    url: str
    publisher: str
    title: str
    lead: str | None
    body: str
    author: str | None
    published_at: datetime | None
    language: str | None


# One statement stores the article and records the outcome on the frontier row,
# if the row still waits for extraction ('claimed' is empty once another worker
# recorded an outcome; FOR UPDATE waits for a worker that is doing so). A
# re-extraction (reprocess) of the same frontier row updates its article; the
# NLP and story stages start over only if the text itself changed. When another
# frontier row already holds the URL, no article is written and the row becomes
# a 'duplicate' of that article.
SAVE_ARTICLE = """
WITH claimed AS (
    SELECT id FROM news.frontier WHERE id = %(frontier_id)s AND state = 'fetched' FOR UPDATE
), stored AS (
    INSERT INTO news.articles
           (url, source_id, publisher, title, lead, body, author, published_at, language,
            frontier_id, fetched_at)
    SELECT %(url)s, %(source_id)s::bigint, %(publisher)s, %(title)s, %(lead)s, %(body)s,
           %(author)s, %(published_at)s::timestamptz, %(language)s, claimed.id,
           %(fetched_at)s::timestamptz
      FROM claimed
    ON CONFLICT (url) DO UPDATE
       SET title = EXCLUDED.title, lead = EXCLUDED.lead, body = EXCLUDED.body,
           author = EXCLUDED.author, published_at = EXCLUDED.published_at,
           language = EXCLUDED.language, extracted_at = now(),
           stage = CASE WHEN (news.articles.title, news.articles.lead, news.articles.body)
                             IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.lead, EXCLUDED.body)
                        THEN 'extracted' ELSE news.articles.stage END
     WHERE news.articles.frontier_id = EXCLUDED.frontier_id
    RETURNING id
)
UPDATE news.frontier
   SET state = CASE WHEN EXISTS (SELECT 1 FROM stored) THEN 'extracted' ELSE 'duplicate' END,
       article_id = coalesce((SELECT id FROM stored),
                             (SELECT id FROM news.articles WHERE url = %(url)s)),
       canonical_url = %(url)s, error_detail = NULL, updated_at = now()
 WHERE id = (SELECT id FROM claimed)
RETURNING state, article_id
"""

# The statement above cannot see an article that a concurrent worker committed
# while the upsert waited for it; this one, run after it, can.
RESOLVE_DUPLICATE = """
UPDATE news.frontier
   SET article_id = (SELECT id FROM news.articles WHERE url = %(url)s)
 WHERE id = %(frontier_id)s
RETURNING article_id
"""

MARK_NOT_ARTICLE = """
UPDATE news.frontier
   SET state = 'not_article', canonical_url = %(canonical_url)s, article_id = NULL,
       error_detail = %(reason)s, updated_at = now()
 WHERE id = %(id)s AND state = 'fetched'
RETURNING id
"""

# The raw page is kept: `vnnews reprocess` retries it after a fix of the extractor.
MARK_EXTRACT_ERROR = """
UPDATE news.frontier
   SET state = 'gone', error_reason = 'extract_error', error_detail = %(detail)s,
       updated_at = now()
 WHERE id = %(id)s AND state = 'fetched'
RETURNING id
"""


def save_article(
    conn: psycopg.Connection, page: FetchedPage, fields: ArticleFields
) -> tuple[str, int] | None:
    """Store the article unless another URL already holds it; returns (state, article
    id), or None if the page no longer waits for extraction (another worker took it)."""
    params = {
        **fields.__dict__,
        "source_id": page.source_id,
        "frontier_id": page.id,
        "fetched_at": page.fetched_at,
    }
    row = conn.execute(SAVE_ARTICLE, params).fetchone()
    if row is None:
        return None
    state, article_id = row
    if article_id is None:
        (article_id,) = conn.execute(RESOLVE_DUPLICATE, params).fetchone()
    return state, article_id


def mark_not_article(
    conn: psycopg.Connection, page: FetchedPage, *, canonical_url: str | None, reason: str
) -> bool:
    """Record that the page is not an article; False if another worker took the page."""
    params = {"id": page.id, "canonical_url": canonical_url, "reason": reason}
    return conn.execute(MARK_NOT_ARTICLE, params).fetchone() is not None


def mark_extract_error(conn: psycopg.Connection, page: FetchedPage, detail: str) -> bool:
    """Record that extraction crashed; False if another worker took the page."""
    params = {"id": page.id, "detail": detail[:1000]}
    return conn.execute(MARK_EXTRACT_ERROR, params).fetchone() is not None


REQUEUE_EXTRACTION = """
UPDATE news.frontier f
   SET state = 'fetched', updated_at = now(),
       error_reason = CASE WHEN f.state = 'gone' THEN NULL ELSE f.error_reason END
  FROM news.raw_pages r
 WHERE r.frontier_id = f.id
   AND (f.state IN ('extracted', 'not_article', 'duplicate')
        OR (f.state = 'gone' AND f.error_reason = 'extract_error'))
   AND (%(source_ids)s::bigint[] IS NULL OR f.source_id = ANY(%(source_ids)s::bigint[]))
"""


def requeue_extraction(conn: psycopg.Connection, source_ids: Sequence[int] | None) -> int:
    """Send every stored raw page back to extraction (``vnnews reprocess``)."""
    return conn.execute(REQUEUE_EXTRACTION, {"source_ids": _ids(source_ids)}).rowcount


# --- robots.txt, kept per host so a new process does not fetch it again -------------

GET_ROBOTS = """
SELECT robots_txt, robots_status, robots_fetched_at FROM news.hosts
 WHERE host = %s AND robots_fetched_at IS NOT NULL
"""

PUT_ROBOTS = """
INSERT INTO news.hosts (host, robots_txt, robots_status, robots_fetched_at)
VALUES (%s, %s, %s, %s)
ON CONFLICT (host) DO UPDATE
   SET robots_txt = EXCLUDED.robots_txt, robots_status = EXCLUDED.robots_status,
       robots_fetched_at = EXCLUDED.robots_fetched_at
"""


def get_robots(conn: psycopg.Connection, host: str) -> tuple[str, int | None, datetime] | None:
    return conn.execute(GET_ROBOTS, (host,)).fetchone()


def put_robots(
    conn: psycopg.Connection, host: str, text: str, status: int | None, fetched_at: datetime
) -> None:
    conn.execute(PUT_ROBOTS, (host, text, status, fetched_at))


# --- reading articles back -------------------------------------------------------------

LIST_ARTICLES = """
SELECT article_id, url, publisher, title, lead, body, author, published_at, fetched_at
  FROM news.v_articles
 WHERE (%(since)s::timestamptz IS NULL OR coalesce(published_at, fetched_at) >= %(since)s)
   AND (%(source)s::text IS NULL OR publisher = %(source)s)
 ORDER BY published_at DESC NULLS LAST, article_id DESC
 LIMIT %(limit)s
"""


def list_articles(
    conn: psycopg.Connection,
    *,
    since: datetime | None = None,
    source: str | None = None,
    limit: int = 100,
) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            LIST_ARTICLES, {"since": since, "source": source, "limit": limit}
        ).fetchall()


SOURCE_IDS = "SELECT id FROM news.sources WHERE lower(name) = ANY(%s)"


def source_ids(conn: psycopg.Connection, names: Sequence[str]) -> list[int]:
    return [r[0] for r in conn.execute(SOURCE_IDS, ([n.lower() for n in names],))]


def _ids(source_ids: Iterable[int] | None) -> list[int] | None:
    return list(source_ids) if source_ids is not None else None
