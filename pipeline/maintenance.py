"""Housekeeping of the news database and the figures operators watch.

The ``vnnews_maintenance`` DAG runs one task per function here once a day;
the other DAGs read :func:`backlog` to decide whether there is work
downstream. Every function takes a connection and commits in small steps, so
it never holds locks a running crawl or processing task is waiting for.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import class_row

log = logging.getLogger(__name__)

#: Raw HTML is kept this long after its fetch so ``vnnews reprocess`` can
#: re-extract a month of pages after an extractor fix without fetching them
#: again; older pages are only disk (raw pages are most of the database).
RAW_HTML_MAX_AGE = timedelta(days=30)

#: Raw pages deleted per transaction: each batch holds its row locks for a
#: fraction of a second, so a crawl storing pages meanwhile never waits long.
PRUNE_BATCH = 1000

#: Reasons for giving a URL up that say nothing about the URL itself: the
#: server or the network was having a bad day (see ``pipeline.fetch.REASONS``,
#: where these are the ones marked retryable, less ``dns_error``, which is
#: retried only when temporary and is then recorded as ``failed``, not ``gone``).
TRANSIENT_REASONS = frozenset(
    {
        "timeout",
        "deadline",
        "connection_error",
        "http_429",
        "http_5xx",
        "robots_unavailable",
        "truncated",
        "internal_error",
    }
)

#: A URL given up for a transient reason gets one more attempt per sweep while it
#: is this young: 3 days is the clustering window (``pipeline.cluster.WINDOW``),
#: after which a late article no longer joins its story by topic.
RETRY_MAX_AGE = timedelta(days=3)

#: The health log flags a source when more than this share of the last day's
#: fetches failed: a healthy publisher fails a few per cent (timeouts, the odd
#: 404); half means its site, or our access to it, is broken.
MAX_FAILURE_RATE = 0.5


# --- backlog -------------------------------------------------------------------------------

BACKLOG = """
SELECT count(*) FILTER (WHERE stage = 'extracted'),
       count(*) FILTER (WHERE stage = 'processed')
  FROM news.articles
 WHERE stage <> 'clustered'
"""


@dataclass(frozen=True)
class Backlog:
    """Articles waiting for the next stages."""

    to_process: int  # stage 'extracted'
    to_cluster: int  # stage 'processed'


def backlog(conn: psycopg.Connection) -> Backlog:
    """Counted off the partial index ``articles_stage`` (only unclustered rows)."""
    return Backlog(*conn.execute(BACKLOG).fetchone())


# --- VACUUM (ANALYZE) ----------------------------------------------------------------------

NEWS_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'news' ORDER BY tablename"


def vacuum_analyze(conn: psycopg.Connection) -> list[str]:
    """VACUUM (ANALYZE) every table in schema ``news``, one at a time.

    Autovacuum does this too, but only after a share of a table changed (and not
    at all where it is switched off): every URL's frontier row is rewritten two
    or three times a crawl, and the claim queries walk past the dead versions
    until a vacuum clears them; the pruned raw HTML is only reusable after one;
    and a nightly crawl adding a day to a large table can leave the planner on
    yesterday's figures. Returns the tables done.
    """
    tables = [row[0] for row in conn.execute(NEWS_TABLES)]
    conn.commit()
    autocommit = conn.autocommit
    conn.autocommit = True  # VACUUM cannot run inside a transaction
    try:
        for table in tables:
            conn.execute(sql.SQL("VACUUM (ANALYZE) news.{}").format(sql.Identifier(table)))
    finally:
        conn.autocommit = autocommit
    log.info("vacuumed and analysed %d tables in schema news", len(tables))
    return tables


# --- pruning raw HTML ----------------------------------------------------------------------

# Pages still waiting for extraction ('fetched') are never pruned, nor pages whose
# extraction crashed (kept as evidence until the extractor is fixed).
PRUNABLE_PAGES = """
SELECT r.frontier_id
  FROM news.raw_pages AS r
  JOIN news.frontier AS f ON f.id = r.frontier_id
 WHERE r.fetched_at < now() - make_interval(secs => %(age)s)
   AND f.state <> 'fetched'
   AND f.error_reason IS DISTINCT FROM 'extract_error'
 ORDER BY r.frontier_id
"""

# The conditions are checked again: a page may have been sent back to
# extraction (``vnnews reprocess``) since it was listed.
DELETE_PAGES = """
DELETE FROM news.raw_pages AS r
 USING news.frontier AS f
 WHERE r.frontier_id = ANY(%(ids)s)
   AND f.id = r.frontier_id
   AND r.fetched_at < now() - make_interval(secs => %(age)s)
   AND f.state <> 'fetched'
   AND f.error_reason IS DISTINCT FROM 'extract_error'
RETURNING octet_length(r.html_gzip)
"""


@dataclass(frozen=True)
class PruneResult:
    pages: int
    stored_bytes: int  # compressed bytes freed for reuse (VACUUM returns them to tables)


def prune_raw_pages(
    conn: psycopg.Connection,
    older_than: timedelta = RAW_HTML_MAX_AGE,
    *,
    batch_size: int = PRUNE_BATCH,
) -> PruneResult:
    """Delete raw HTML fetched more than ``older_than`` ago, ``batch_size`` pages per commit.

    The articles, the frontier rows and their states stay; only the ability to
    re-extract those pages without fetching them again goes.
    """
    age = older_than.total_seconds()
    ids = [row[0] for row in conn.execute(PRUNABLE_PAGES, {"age": age})]
    conn.commit()
    pages = stored = 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        sizes = [r[0] for r in conn.execute(DELETE_PAGES, {"ids": chunk, "age": age})]
        conn.commit()
        pages += len(sizes)
        stored += sum(sizes)
    log.info("pruned %d raw pages older than %s (%d stored bytes)", pages, older_than, stored)
    return PruneResult(pages, stored)


# --- the retry sweep -----------------------------------------------------------------------

# One more attempt: 'failed' and due now, attempts left as they are, so the crawl's
# usual rule gives the URL up again after this attempt if it fails once more.
RETRY_GONE = """
UPDATE news.frontier
   SET state = 'failed', next_attempt_at = now(), updated_at = now()
 WHERE state = 'gone'
   AND error_reason = ANY(%(reasons)s)
   AND discovered_at >= now() - make_interval(secs => %(age)s)
RETURNING error_reason
"""


def retry_transient_failures(
    conn: psycopg.Connection, max_age: timedelta = RETRY_MAX_AGE
) -> Counter[str]:
    """Give URLs given up after transient failures one more attempt; counts by reason.

    A publisher that was down for the night loses its articles otherwise: the
    crawl's backoff (minutes to an hour) runs out while the site is still
    down. The next crawl pass fetches them like any due URL, politely.
    """
    reasons = Counter(
        row[0]
        for row in conn.execute(
            RETRY_GONE, {"reasons": sorted(TRANSIENT_REASONS), "age": max_age.total_seconds()}
        )
    )
    conn.commit()
    log.info("retry sweep: %d URLs due again (%s)", sum(reasons.values()), _counts(reasons))
    return reasons


# --- source health -------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceHealth:
    """One row of ``news.v_source_health`` (sql/views/040_source_health.sql says what each is)."""

    source_id: int
    source: str
    homepage: str
    feeds: int
    feeds_failing: int
    last_polled_at: datetime | None
    last_success_at: datetime | None
    articles_24h: int
    articles_7d: int
    attempts_24h: int
    failures_24h: int
    failure_rate_24h: float | None
    failure_reasons: dict[str, int]
    dated_share_7d: float | None
    body_share_7d: float | None


SOURCE_HEALTH = "SELECT * FROM news.v_source_health ORDER BY source"


def source_health(conn: psycopg.Connection) -> list[SourceHealth]:
    with conn.cursor(row_factory=class_row(SourceHealth)) as cur:
        return cur.execute(SOURCE_HEALTH).fetchall()


def unhealthy(row: SourceHealth) -> list[str]:
    """Why a source needs a look (empty when it is fine): what the daily log flags."""
    problems = []
    if row.feeds and row.feeds_failing == row.feeds:
        problems.append("every feed failing")
    if row.articles_24h == 0:
        problems.append("no articles in 24 h")
    if row.failure_rate_24h is not None and row.failure_rate_24h > MAX_FAILURE_RATE:
        problems.append(f"{row.failure_rate_24h:.0%} of fetches failed")
    return problems


def format_health(rows: list[SourceHealth]) -> str:
    """The health table as plain text, one line per source, for task logs."""
    width = max((len(r.source) for r in rows), default=6)
    lines = [
        f"{'source':<{width}}  last ok poll      24h  fail%  dated  body  failures by reason",
    ]
    for r in rows:
        last = r.last_success_at.strftime("%Y-%m-%d %H:%M") if r.last_success_at else "never"
        lines.append(
            f"{r.source:<{width}}  {last:<16}  {r.articles_24h:>3}  {_share(r.failure_rate_24h)}"
            f"  {_share(r.dated_share_7d)}  {_share(r.body_share_7d)}"
            f"  {_counts(Counter(r.failure_reasons)) or '-'}"
        )
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "    -" if value is None else f"{value:>5.0%}"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{reason} ×{n}" for reason, n in counter.most_common())
