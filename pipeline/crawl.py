"""One crawl pass: poll feeds → frontier → fetch → extract → articles.

The pass polls every selected feed (conditional GET), adds new links to the
frontier, then drains the frontier. Each URL is handled in two transactions:

1. a worker thread claims the URL *and its host*, fetches it and stores the raw
   page ('fetched'); locking the host row keeps all workers (threads, processes,
   Airflow tasks) polite to that host while others fetch from other hosts;
2. the page goes to an extraction process, which extracts it and stores the
   article with a statement that takes the page only while it is still
   'fetched'. Extraction is CPU-bound Python, so it runs in processes while the
   threads do the I/O. Pages left 'fetched' by an interrupted pass (and pages
   sent back by ``reprocess``) go by id and are read from Postgres.

Every step commits its outcome, so a crash at any point leaves each URL in a
recorded state that the next pass resumes from: nothing is lost, nothing is
fetched twice.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool
from tqdm import tqdm

from pipeline import db, store, urls
from pipeline.extract import ExtractedPage, extract
from pipeline.feeds import FeedError, FeedItem, parse_feed
from pipeline.fetch import FEED, Fetcher, FetchError, FetchSettings, decode_html
from pipeline.sources import Source, SourcesFile

log = logging.getLogger(__name__)

#: Pages handed to extraction and not yet done, at most: fetched pages wait in
#: memory (real pages are ~200 kB), and a few per extraction process keep them busy.
MAX_QUEUED_PAGES = 32

#: How long an idle worker waits before asking again when every host with due
#: work is busy with another worker; doubled while it stays idle, up to the max.
IDLE_POLL = 0.01
MAX_IDLE_POLL = 0.5


@dataclass(frozen=True)
class CrawlOptions:
    #: Worker threads draining the frontier. They do the I/O (HTTP, Postgres); at
    #: most one request per host is in flight, so more threads help with more hosts.
    workers: int = 4
    #: Extraction processes, one per core by default (0: one extraction thread in
    #: this process). bench/crawl_overhead.py measures the effect.
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Stop claiming new URLs once this many articles were stored (None: no limit).
    max_articles: int | None = None
    #: A URL that failed this many times is given up ('gone', with the last reason).
    max_attempts: int = 4
    #: First retry delay for a failed URL; doubled on each further attempt, and never
    #: shorter than the server's Retry-After.
    retry_base_delay: float = 300.0
    #: How long a pass waits for work that becomes due soon (a host's Crawl-delay,
    #: a short retry) before it ends and leaves the rest to the next pass.
    max_wait: float = 30.0


@dataclass
class SourceReport:
    feeds: int = 0
    feeds_failed: int = 0
    feed_errors: Counter[str] = field(default_factory=Counter)
    new_urls: int = 0
    articles: int = 0


@dataclass
class CrawlSummary:
    feeds_polled: int = 0
    feeds_unchanged: int = 0
    feeds_failed: int = 0
    new_urls: int = 0
    rejected_urls: int = 0
    pages_fetched: int = 0
    articles_stored: int = 0
    not_articles: int = 0
    duplicates: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    retry_later: int = 0
    seconds: float = 0.0
    feeds_seconds: float = 0.0
    pages_seconds: float = 0.0
    per_source: dict[str, SourceReport] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, source: str | None = None, **counts: int) -> None:
        """Thread-safe increments, also per source for the keys a SourceReport has."""
        with self._lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)
                if source is not None and key in ("new_urls", "articles_stored"):
                    report = self.per_source.setdefault(source, SourceReport())
                    attr = "articles" if key == "articles_stored" else key
                    setattr(report, attr, getattr(report, attr) + n)

    def fail(self, reason: str) -> None:
        with self._lock:
            self.failures[reason] += 1

    def feed_result(self, source: str, error: str | None) -> None:
        with self._lock:
            report = self.per_source.setdefault(source, SourceReport())
            report.feeds += 1
            if error:
                report.feeds_failed += 1
                report.feed_errors[error] += 1

    def format(self) -> str:
        """The human summary printed at the end of ``vnnews crawl``."""
        lines = [
            f"crawl finished in {self.seconds:.1f} s",
            f"  feeds:    {self.feeds_polled} polled, {self.feeds_unchanged} unchanged (304),"
            f" {self.feeds_failed} failed ({self.feeds_seconds:.1f} s)",
            f"  urls:     {self.new_urls} new, {self.rejected_urls} rejected,"
            f" {self.pages_fetched} pages fetched ({self.pages_seconds:.1f} s)",
            f"  articles: {self.articles_stored} stored, {self.duplicates} duplicates,"
            f" {self.not_articles} not articles",
        ]
        if self.failures:
            reasons = ", ".join(f"{r} ×{n}" for r, n in self.failures.most_common())
            lines.append(f"  failures: {reasons}")
        if self.retry_later:
            lines.append(f"  waiting:  {self.retry_later} URLs scheduled for a later pass")
        lines.append("  per source:")
        width = max((len(name) for name in self.per_source), default=0)
        for name, report in self.per_source.items():
            status = f"{report.feeds - report.feeds_failed}/{report.feeds} feeds ok"
            if report.feed_errors:
                status += " (" + ", ".join(f"{e} ×{n}" for e, n in report.feed_errors.items()) + ")"
            lines.append(
                f"    {name:<{width}}  {status}; {report.new_urls} new urls,"
                f" {report.articles} articles"
            )
        return "\n".join(lines)


def fetch_settings_for(sources_file: SourcesFile) -> FetchSettings:
    """The fetcher configuration a sources file asks for (defaults otherwise)."""
    settings = FetchSettings(allow_hosts=sources_file.settings.allow_hosts)
    if sources_file.settings.min_host_interval is not None:
        settings = replace(settings, min_host_interval=sources_file.settings.min_host_interval)
    if sources_file.settings.user_agent:
        settings = replace(settings, user_agent=sources_file.settings.user_agent)
    return settings


def crawl(
    database_url: str,
    sources_file: SourcesFile,
    *,
    source_names: Sequence[str] = (),
    options: CrawlOptions = CrawlOptions(),
    fetch_settings: FetchSettings | None = None,
    progress: bool = False,
) -> CrawlSummary:
    """Run one pass over the selected sources (all by default) and report what happened."""
    started = time.monotonic()
    selected = sources_file.select(list(source_names))
    summary = CrawlSummary(per_source={s.name: SourceReport() for s in selected})
    settings = fetch_settings or fetch_settings_for(sources_file)
    # the extraction processes start first: they warm up while the feeds are polled
    with (
        Extraction(database_url, options.processes, summary) as extraction,
        _pool(database_url, options.workers) as pool,
    ):
        with pool.connection() as conn:
            feeds = store.sync_sources(conn, selected)
        interval_by_name = {s.name: s.min_host_interval for s in selected}
        intervals = {f.source_id: interval_by_name[f.source_name] or 0.0 for f in feeds}
        source_ids = sorted(intervals)
        with Fetcher(settings, robots_store=PostgresRobotsStore(pool)) as fetcher:
            _poll_feeds(pool, fetcher, selected, feeds, summary, options.workers)
            polled = time.monotonic()
            summary.feeds_seconds = polled - started
            _drain_frontier(pool, fetcher, extraction, intervals, options, summary, progress)
            extraction.wait()
            summary.pages_seconds = time.monotonic() - polled
        with pool.connection() as conn:
            summary.retry_later = store.count_waiting(conn, source_ids)
    summary.seconds = time.monotonic() - started
    return summary


def reprocess(
    database_url: str,
    *,
    source_ids: Sequence[int] | None = None,
    options: CrawlOptions = CrawlOptions(),
    progress: bool = False,
) -> CrawlSummary:
    """Extract every stored raw page again (after an extractor upgrade); no network."""
    started = time.monotonic()
    summary = CrawlSummary()
    with db.connect(database_url, autocommit=True) as conn:
        store.requeue_extraction(conn, source_ids)
        page_ids = store.fetched_page_ids(conn, source_ids)
    bar = tqdm(total=len(page_ids), disable=not progress, unit="page", desc="extract")
    with bar, Extraction(database_url, options.processes, summary, bar.update) as extraction:
        for page_id in page_ids:
            extraction.submit(page_id)
        extraction.wait()
    summary.seconds = time.monotonic() - started
    return summary


class PostgresRobotsStore:
    """Keeps robots.txt per host in ``news.hosts`` so later passes need not refetch it."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def get(self, host: str) -> tuple[str, int | None, datetime] | None:
        with self._pool.connection() as conn:
            return store.get_robots(conn, host)

    def put(self, host: str, text: str, status: int | None, fetched_at: datetime) -> None:
        with self._pool.connection() as conn:
            store.put_robots(conn, host, text, status, fetched_at)


def _pool(database_url: str, workers: int) -> ConnectionPool:
    """Each worker holds one connection; robots.txt look-ups borrow a second one briefly.

    Connections are in autocommit mode so that each ``conn.transaction()`` block
    is a real transaction that commits at its end, not a savepoint inside an
    implicit transaction that an earlier SELECT left open.
    """
    return ConnectionPool(
        database_url,
        min_size=1,
        max_size=2 * workers + 1,
        open=True,
        kwargs={"application_name": "vnnews-crawl", "autocommit": True},
        configure=_configure,
    )


def _configure(conn: psycopg.Connection) -> None:
    """Commit without waiting for the WAL flush (~3 ms per commit on a VM disk).

    Safe here: a crash of the database server can lose at most the last moment of
    commits, which puts those URLs back to 'discovered' or 'fetched' and the next
    pass redoes them; every write is idempotent, so nothing is lost or duplicated.
    A crash of vnnews itself loses nothing either way.
    """
    conn.execute("SET synchronous_commit = off")


# --- feeds -------------------------------------------------------------------------------


def _poll_feeds(
    pool: ConnectionPool,
    fetcher: Fetcher,
    sources: Sequence[Source],
    feeds: Sequence[store.FeedRow],
    summary: CrawlSummary,
    workers: int,
) -> None:
    """Poll each source's feeds in order; sources in parallel (they are different hosts)."""
    homepage = {s.name: s.homepage for s in sources}
    by_source: dict[str, list[store.FeedRow]] = {}
    for feed in feeds:
        by_source.setdefault(feed.source_name, []).append(feed)

    def poll_source(name: str) -> None:
        for feed in by_source[name]:
            _poll_feed(pool, fetcher, feed, homepage[name], summary)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="feeds") as ex:
        for future in [ex.submit(poll_source, name) for name in by_source]:
            future.result()


def _poll_feed(
    pool: ConnectionPool,
    fetcher: Fetcher,
    feed: store.FeedRow,
    homepage: str,
    summary: CrawlSummary,
) -> None:
    summary.add(feeds_polled=1)
    with pool.connection() as conn:
        try:
            result = fetcher.fetch(
                feed.url, etag=feed.etag, last_modified=feed.last_modified, accept=FEED
            )
            if result.not_modified:
                store.record_feed_success(
                    conn,
                    feed.id,
                    status=304,
                    etag=result.etag,
                    last_modified=result.last_modified,
                    items=0,
                )
                summary.add(feeds_unchanged=1)
                summary.feed_result(feed.source_name, None)
                return
            parsed = parse_feed(
                result.content, result.final_url, result.headers.get("content-type")
            )
        except (FetchError, FeedError) as exc:
            if isinstance(exc, FetchError):
                reason, detail, status = exc.reason, exc.detail, exc.status
            else:
                reason, detail, status = "not_a_feed", str(exc), None
            # recorded on the feed and summarised per source: no need to shout
            log.info("feed %s (%s) failed: %s: %s", feed.url, feed.source_name, reason, detail)
            store.record_feed_failure(
                conn, feed.id, status=status, error=f"{reason}: {detail}"[:500]
            )
            summary.add(feeds_failed=1)
            summary.feed_result(feed.source_name, reason)
            return
        accepted, rejected = _split_items(parsed.items, feed, homepage)
        with conn.transaction():
            new = store.enqueue(conn, accepted, source_id=feed.source_id, feed_id=feed.id)
            refused = sum(
                store.record_rejected(
                    conn,
                    item,
                    host=host,
                    reason=reason,
                    detail=detail,
                    source_id=feed.source_id,
                    feed_id=feed.id,
                )
                for item, host, reason, detail in rejected
            )
            store.record_feed_success(
                conn,
                feed.id,
                status=result.status,
                etag=result.etag,
                last_modified=result.last_modified,
                items=len(parsed.items),
                problem=parsed.problem,
            )
    summary.add(feed.source_name, new_urls=new)
    summary.add(rejected_urls=refused)
    summary.feed_result(feed.source_name, None)


def _split_items(
    items: Sequence[FeedItem], feed: store.FeedRow, homepage: str
) -> tuple[list[tuple[FeedItem, str]], list[tuple[FeedItem, str, str, str]]]:
    """Crawlable links (http(s), on the publisher's own site) vs links we record and skip."""
    own_sites = {_site(urls.host_of(homepage)), _site(urls.host_of(feed.url))}
    accepted, rejected = [], []
    for item in items:
        if urls.url_bytes(item.url) > urls.MAX_URL_LENGTH:
            # recorded under its first characters: Postgres cannot index the whole
            detail = f"a link of {urls.url_bytes(item.url)} bytes"
            shortened = replace(item, url=item.url[:REJECTED_URL_CHARS])
            rejected.append((shortened, "", "bad_url", detail))
            continue
        if not urls.is_http_url(item.url):
            rejected.append((item, "", "bad_scheme", "only http(s) links are crawled"))
            continue
        host = urls.host_of(item.url)
        if _site(host) in own_sites:
            accepted.append((item, host))
        else:
            rejected.append((item, host, "offsite", f"{host} is not the publisher's site"))
    return accepted, rejected


#: A link too long to crawl is recorded under this many of its first characters.
REJECTED_URL_CHARS = 500

#: Second-level labels under which country domains register names (``.com.vn``).
SECOND_LEVEL_LABELS = frozenset({"com", "net", "org", "gov", "edu", "ac", "co", "info", "int"})


def _site(host: str) -> str:
    """The registrable part of a host key, near enough without a public-suffix list:
    ``kinhdoanh.vnexpress.net`` → ``vnexpress.net``, ``cdn.24h.com.vn`` → ``24h.com.vn``.
    An IP address (with its port) is a site of its own."""
    name = urlsplit("//" + host).hostname or host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        labels = name.rstrip(".").split(".")
        keep = 3 if len(labels) >= 3 and labels[-2] in SECOND_LEVEL_LABELS else 2
        return ".".join(labels[-keep:])
    return host


# --- the frontier ------------------------------------------------------------------------


def _drain_frontier(
    pool: ConnectionPool,
    fetcher: Fetcher,
    extraction: Extraction,
    intervals: dict[int, float],
    options: CrawlOptions,
    summary: CrawlSummary,
    progress: bool,
) -> None:
    """Fetch (and hand over for extraction) until nothing is due within ``options.max_wait``.

    ``intervals`` maps each selected source id to its own minimum host interval.
    """
    source_ids = sorted(intervals)
    with pool.connection() as conn:
        total = store.count_waiting(conn, source_ids)
        for page_id in store.fetched_page_ids(conn, source_ids):  # left by an interrupted pass
            extraction.submit(page_id)
    stop = threading.Event()
    with tqdm(total=total, disable=not progress, unit="url", desc="crawl") as bar:

        def work() -> None:
            with pool.connection() as conn:
                _worker(
                    conn, fetcher, extraction, source_ids, intervals, options, summary, stop, bar
                )

        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="crawl") as ex:
            for future in [ex.submit(work) for _ in range(options.workers)]:
                future.result()


def _worker(
    conn: psycopg.Connection,
    fetcher: Fetcher,
    extraction: Extraction,
    source_ids: Sequence[int],
    intervals: dict[int, float],
    options: CrawlOptions,
    summary: CrawlSummary,
    stop: threading.Event,
    bar: tqdm,
) -> None:
    idle = IDLE_POLL
    while not stop.is_set():
        if options.max_articles is not None and (
            summary.articles_stored + extraction.in_flight >= options.max_articles
        ):
            stop.set()
            return
        outcome = _fetch_one(conn, fetcher, source_ids, intervals, options, summary)
        if outcome is not None:
            bar.update()
            if outcome is not False:
                extraction.submit(outcome)
            idle = IDLE_POLL
            continue
        wait = store.seconds_until_due(conn, source_ids)
        if wait is None or wait > options.max_wait:
            return
        time.sleep(min(max(wait, idle), MAX_IDLE_POLL))
        idle = min(idle * 2, MAX_IDLE_POLL)  # every host busy: ask less and less often


def _fetch_one(
    conn: psycopg.Connection,
    fetcher: Fetcher,
    source_ids: Sequence[int],
    intervals: dict[int, float],
    options: CrawlOptions,
    summary: CrawlSummary,
) -> store.FetchedPage | bool | None:
    """Claim and fetch one URL: the page if it was stored, False if the attempt
    failed (recorded), None if nothing was claimable.

    The host stays locked for the whole transaction. Its statements are not
    pipelined: psycopg's pipeline mode saves two round trips per page but costs
    more client and server CPU than it saves time once several hosts are
    fetched in parallel (bench/crawl_overhead.py, 4 hosts: 256 pages/s with it,
    273 without; 1 host, where the round trips are the bottleneck: 231 and 223).
    """
    with conn.transaction():
        job = store.claim_fetch(conn, source_ids)
        if job is None:
            return None
        interval = max(fetcher.crawl_delay(job.host), intervals.get(job.source_id, 0.0))
        try:
            result = fetcher.fetch(job.url)
            if not result.complete and job.attempts + 1 < options.max_attempts:
                # on the last attempt a truncated page is kept rather than lost
                raise FetchError(
                    "truncated",
                    "the page ended before </html>",
                    retryable=True,
                    status=result.status,
                )
        except Exception as exc:  # recorded, so a failing URL (or a bug) never wedges the queue
            if not isinstance(exc, FetchError):
                log.exception("unexpected error fetching %s", job.url)
                exc = FetchError("internal_error", repr(exc), retryable=True)
            store.set_host_next_fetch(conn, job.host, interval)
            _record_failure(conn, job, exc, options, summary)
            return False
        page = store.save_fetched(
            conn,
            job,
            host_interval=interval,
            final_url=result.final_url,
            status=result.status,
            content=result.content,
            content_type=result.headers.get("content-type"),
            charset=result.charset,
            etag=result.etag,
            last_modified=result.last_modified,
            note=None if result.complete else "truncated",
        )
    summary.add(pages_fetched=1)
    return page


def _record_failure(
    conn: psycopg.Connection,
    job: store.FetchJob,
    err: FetchError,
    options: CrawlOptions,
    summary: CrawlSummary,
) -> None:
    """Schedule a retry (backoff, never sooner than Retry-After) or give the URL up."""
    attempt = job.attempts + 1
    retry_in = None
    if err.retryable and attempt < options.max_attempts:
        delay = options.retry_base_delay * 2 ** (attempt - 1)
        retry_in = timedelta(seconds=max(delay, err.retry_after or 0.0))
    log.info(
        "%s failed (attempt %d%s): %s", job.url, attempt, "" if retry_in else ", giving up", err
    )
    store.mark_failed(
        conn, job.id, reason=err.reason, detail=err.detail, status=err.status, retry_in=retry_in
    )
    summary.fail(err.reason)


# --- extraction -------------------------------------------------------------------------


class Extraction:
    """Extracts fetched pages in a pool of processes, as fetchers hand them over.

    Each process has its own connection and stores each page's outcome in one
    statement; results come back as a small outcome that updates the summary.
    ``processes=0`` uses one thread instead.
    """

    def __init__(
        self,
        database_url: str,
        processes: int,
        summary: CrawlSummary,
        on_done: Callable[[], object] | None = None,
    ) -> None:
        self._summary = summary
        self._on_done = on_done
        self._lock = threading.Lock()
        self._pending: set[Future] = set()
        self._room = threading.BoundedSemaphore(MAX_QUEUED_PAGES)
        self._error: BaseException | None = None
        self._executor: Executor
        if processes > 0:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context(
                "forkserver" if "forkserver" in methods else "spawn"
            )
            if context.get_start_method() == "forkserver":
                context.set_forkserver_preload(["pipeline.crawl"])
            self._executor = ProcessPoolExecutor(
                processes,
                mp_context=context,
                initializer=_start_extraction_process,
                initargs=(database_url, os.getpid()),
            )
            self._executor.submit(int)  # start the processes now, in the background
        else:
            self._executor = ThreadPoolExecutor(
                1,
                thread_name_prefix="extract",
                initializer=_open_worker_connection,
                initargs=(database_url,),
            )

    def __enter__(self) -> Extraction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=exc_info[0] is not None)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def submit(self, page: store.FetchedPage | int) -> None:
        """Extract a page just fetched, or one stored in news.raw_pages (by id).

        Blocks while MAX_QUEUED_PAGES are waiting, so fetchers that outpace the
        extraction processes slow down instead of piling pages up in memory.
        """
        self._room.acquire()
        try:
            future = self._executor.submit(extract_page, page)
        except BaseException:  # a broken pool: give the slot back, let the caller see it
            self._room.release()
            raise
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def wait(self) -> None:
        """Wait for every submitted page; re-raise a crash of the pool itself."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                break
            for future in pending:
                future.exception()  # blocks until done; outcomes are handled in _done
        if self._error is not None:
            raise self._error

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)
        self._room.release()
        if future.cancelled():  # the pass is failing; its pages stay 'fetched'
            return
        error = future.exception()
        if error is not None:  # the pool broke (e.g. a process was killed); pages stay 'fetched'
            self._error = self._error or error
            return
        outcome = future.result()
        if outcome is not None:
            state, publisher = outcome
            if state == "extracted":
                self._summary.add(publisher, articles_stored=1)
            elif state == "duplicate":
                self._summary.add(duplicates=1)
            elif state == "not_article":
                self._summary.add(not_articles=1)
            else:
                self._summary.fail(state)
        if self._on_done is not None:
            self._on_done()


#: Each extraction process (or thread) keeps one connection of its own.
_worker_state = threading.local()


def _open_worker_connection(database_url: str) -> None:
    conn = psycopg.connect(database_url, autocommit=True, application_name="vnnews-extract")
    _configure(conn)
    _worker_state.conn = conn


#: How often an extraction process checks that the crawl that started it still runs.
ORPHAN_CHECK_SECONDS = 1.0


def _start_extraction_process(database_url: str, crawl_pid: int) -> None:
    """Initializer of an extraction process: its connection, and a watch on the crawl.

    A crawl killed with SIGKILL cannot shut its pool down; the processes would
    live on, each holding a Postgres connection, so each leaves once the crawl
    process is gone.
    """
    _open_worker_connection(database_url)
    threading.Thread(
        target=_exit_when_gone, args=(crawl_pid,), name="crawl-watch", daemon=True
    ).start()


def _exit_when_gone(pid: int) -> None:
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive, under another user (pid reused): keep watching
            pass


def extract_page(page: store.FetchedPage | int) -> tuple[str, str | None] | None:
    """Extract and store one fetched page (or stored page id); runs in the extraction
    processes.

    Returns (outcome, publisher), or None if the page is no longer waiting
    (another worker took it).
    """
    conn: psycopg.Connection = _worker_state.conn
    if isinstance(page, int):
        page = store.load_fetched(conn, page)
        if page is None:
            return None
    try:
        html, _ = decode_html(page.content, page.content_type)
        state = _save_extraction(conn, page, extract(html, page.final_url))
    except Exception as exc:  # keep the raw page; `vnnews reprocess` retries after a fix
        if conn.broken or conn.closed:
            raise  # the database went away, not this page's fault: it stays 'fetched'
        log.exception("extraction failed for %s", page.final_url)
        taken = store.mark_extract_error(conn, page, repr(exc))
        return ("extract_error", page.publisher) if taken else None
    return (state, page.publisher) if state is not None else None


def _save_extraction(
    conn: psycopg.Connection, page: store.FetchedPage, extracted: ExtractedPage
) -> str | None:
    """Store the article (or record why not); returns the frontier state reached, or
    None if another worker took the page meanwhile."""
    final_url = urls.canonicalize(page.final_url)
    if not extracted.is_article:
        canonical = extracted.canonical_url
        taken = store.mark_not_article(
            conn,
            page,
            canonical_url=canonical if canonical and urls.is_http_url(canonical) else None,
            reason=extracted.reason or "not an article",
        )
        return "not_article" if taken else None
    fields = store.ArticleFields(
        url=_article_url(extracted.canonical_url, final_url),
        publisher=page.publisher or urls.host_of(final_url),
        title=extracted.title or page.title_hint or "",
        lead=extracted.lead,
        body=extracted.body,
        author=extracted.author,
        published_at=extracted.published_at or page.published_hint,
        language=extracted.language,
    )
    saved = store.save_article(conn, page, fields)
    return saved[0] if saved is not None else None


def _article_url(canonical: str | None, final_url: str) -> str:
    """The page's own canonical URL wins when it points into the same site."""
    try:
        canonical = urls.canonicalize(canonical) if canonical else None
    except urls.UrlError:  # not http(s), or too long
        return final_url
    if canonical and _site(urls.host_of(canonical)) == _site(urls.host_of(final_url)):
        return canonical
    return final_url
