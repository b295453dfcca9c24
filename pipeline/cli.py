"""The ``vnnews`` command line.

Each command is a thin wrapper: parse options, open the database (only for
commands that need it), call one stage function, print its summary. Progress
bars appear only on a terminal; summaries and errors go to stderr, machine
output (JSON, tables) to stdout.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from pipeline import db

if TYPE_CHECKING:
    from pipeline.sources import SourcesFile

# Stage modules are imported inside the commands that use them: `vnnews --help`
# stays instant, and one stage's heavy imports (trafilatura, underthesea) never
# slow down another stage's command.

VIETNAM = timezone(timedelta(hours=7), "ICT")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """vnnews: ingest Vietnamese news into Postgres, keyed by story.

    The database is DATABASE_URL if set; otherwise an embedded Postgres kept in
    $VNNEWS_HOME (default ~/.local/share/vnnews) is started and reused.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def fail(message: str) -> NoReturn:
    """Print a clear error and exit with status 1 (no traceback for expected failures)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


# --- database -----------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Create or update the schema (safe to run repeatedly)."""
    try:
        with db.connect() as conn:
            applied = db.upgrade(conn)
    except db.DatabaseError as exc:
        fail(str(exc))
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


# --- crawl: feeds, fetch, extract (owner: integrator) --------------------------


def _database_url() -> str:
    """The database URL with the schema upgraded; exits with a clear message on failure."""
    try:
        url = db.database_url()
        with db.connect(url) as conn:
            db.upgrade(conn)
    except db.DatabaseError as exc:
        fail(str(exc))
    return url


def _load_sources(path: str | None) -> SourcesFile:
    from pipeline.sources import SourcesError, load_sources

    try:
        return load_sources(path)
    except SourcesError as exc:
        fail(str(exc))


@main.command("crawl")
@click.option(
    "--sources",
    "sources_path",
    type=click.Path(dir_okay=False),
    help="Sources file (default: the registry shipped with vnnews).",
)
@click.option(
    "--source",
    "source_names",
    multiple=True,
    metavar="NAME",
    help="Crawl only this source (repeatable).",
)
@click.option(
    "--max-articles", type=click.IntRange(min=1), help="Stop after storing this many new articles."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Parallel fetch workers (one request per host at a time).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    help="Extraction processes (default: one per CPU; 0: one extraction thread).",
)
@click.option(
    "--no-process", is_flag=True, help="Stop after extraction (run `process` and `cluster` later)."
)
def crawl_command(
    sources_path: str | None,
    source_names: tuple[str, ...],
    max_articles: int | None,
    workers: int,
    processes: int | None,
    no_process: bool,
) -> None:
    """Crawl the sources, then process and cluster what arrived.

    One pass: conditional GET of every feed, new links into the frontier, then
    fetch + extract until nothing is due. Failures are recorded per URL and
    retried by later passes; the summary lists them by reason and source. New
    articles then go through the NLP stage and into stories (see `process` and
    `cluster`), unless --no-process.
    """
    from dataclasses import replace

    from pipeline import cluster, process
    from pipeline.crawl import CrawlOptions, crawl
    from pipeline.sources import SourcesError

    sources_file = _load_sources(sources_path)
    try:
        sources_file.select(list(source_names))
    except SourcesError as exc:
        fail(str(exc))
    options = CrawlOptions(workers=workers, max_articles=max_articles)
    if processes is not None:
        options = replace(options, processes=processes)
    url = _database_url()
    progress = sys.stderr.isatty()
    summary = crawl(
        url, sources_file, source_names=source_names, options=options, progress=progress
    )
    click.echo(summary.format(), err=True)
    if no_process:
        return
    processed = process.process_pending(
        url, workers=_default_workers(), batch_size=process.DEFAULT_BATCH_SIZE, progress=progress
    )
    click.echo(processed.format(), err=True)
    with db.connect(url) as conn:
        click.echo(cluster.cluster_pending(conn).format(), err=True)


@main.command("extract")
@click.argument("path_or_url")
@click.option("--url", help="The page's URL (for relative links and the canonical URL).")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True
)
def extract_command(path_or_url: str, url: str | None, fmt: str) -> None:
    """Extract one page (a file, .gz allowed, or an http(s) URL) and print the result."""
    from pipeline import config, urls
    from pipeline.extract import extract
    from pipeline.fetch import Fetcher, FetchError, FetchSettings, decode_html

    if urls.is_http_url(path_or_url):
        settings = FetchSettings(allow_hosts=config.allow_hosts_from_env())
        try:
            with Fetcher(settings) as fetcher:
                result = fetcher.fetch(path_or_url)
        except FetchError as exc:
            fail(f"cannot fetch {path_or_url}: {exc.reason}: {exc}")
        content, content_type, url = (
            result.content,
            result.headers.get("content-type"),
            (url or result.final_url),
        )
    else:
        try:
            content = Path(path_or_url).read_bytes()
        except OSError as exc:
            fail(f"cannot read {path_or_url}: {exc.strerror}")
        if content[:2] == b"\x1f\x8b":
            content = gzip.decompress(content)
        content_type = None
    html, _ = decode_html(content, content_type)
    page = extract(html, url)
    record = {
        "url": url,
        "canonical_url": page.canonical_url,
        "title": page.title,
        "lead": page.lead,
        "body": page.body,
        "author": page.author,
        "published_at": page.published_at.isoformat() if page.published_at else None,
        "language": page.language,
        "is_article": page.is_article,
    }
    if fmt == "json":
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
    else:
        click.echo(f"{page.title}\n\n{page.lead or ''}\n\n{page.body}")


@main.command("articles")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only articles published (or fetched, if undated) since this date.",
)
@click.option("--source", help="Only this publisher.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def articles_command(since: datetime | None, source: str | None, limit: int, fmt: str) -> None:
    """List stored articles, newest first."""
    from pipeline import store

    with db.connect(_database_url()) as conn:
        rows = store.list_articles(conn, since=_local(since), source=source, limit=limit)
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    for row in rows:
        when = (
            row["published_at"].astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M")
            if row["published_at"]
            else "undated         "
        )
        click.echo(f"{row['article_id']:>7}  {when}  {row['publisher'][:18]:<18}  {row['title']}")


@main.command("reprocess")
@click.option(
    "--source",
    "source_names",
    multiple=True,
    metavar="NAME",
    help="Only pages of this source (repeatable).",
)
def reprocess_command(source_names: tuple[str, ...]) -> None:
    """Extract every stored raw page again (e.g. after upgrading vnnews); no network."""
    from pipeline import store
    from pipeline.crawl import reprocess

    url = _database_url()
    source_ids = None
    if source_names:
        with db.connect(url) as conn:
            source_ids = store.source_ids(conn, source_names)
        if len(source_ids) != len(source_names):
            fail(f"unknown source among {', '.join(source_names)}")
    summary = reprocess(url, source_ids=source_ids, progress=sys.stderr.isatty())
    click.echo(
        f"re-extracted in {summary.seconds:.1f} s: {summary.articles_stored} articles,"
        f" {summary.duplicates} duplicates, {summary.not_articles} not articles,"
        f" {sum(summary.failures.values())} failures",
        err=True,
    )


def _local(value: datetime | None) -> datetime | None:
    """Dates typed on the command line are Vietnam time unless they say otherwise."""
    return value.replace(tzinfo=VIETNAM) if value and value.tzinfo is None else value


# --- nlp: processing stage (owner: nlp) ----------------------------------------


_WORKERS_HELP = "Worker processes (default: all cores)."


def _default_workers() -> int:
    import os

    return len(os.sched_getaffinity(0))


@main.command("nlp")
@click.option(
    "--jsonl",
    nargs=2,
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="IN OUT",
    help='Analyse many texts: lines {"id", "text"} in, one analysis per line out ("-" = stdio).',
)
@click.option("--workers", type=click.IntRange(min=1), help=_WORKERS_HELP)
def nlp_command(jsonl: tuple[str, str] | None, workers: int | None) -> None:
    """Vietnamese analysis: sentences, words, POS tags and entities as JSON.

    Without --jsonl, reads one text on stdin and prints its analysis. Offsets
    are character offsets into the NFC form of the input.
    """
    from tqdm import tqdm

    from pipeline import nlp, process

    if not jsonl:
        analysis = nlp.analyse(sys.stdin.read())
        click.echo(json.dumps(nlp.analysis_json(analysis), ensure_ascii=False))
        return
    source, target = jsonl
    with (
        click.open_file(source, encoding="utf-8") as lines,
        click.open_file(target, "w", encoding="utf-8", atomic=target != "-") as out,
        process.worker_pool(workers or _default_workers()) as mapper,
    ):
        records = (line for line in lines if line.strip())
        results = mapper(process.analyse_json_line, records)
        for line in tqdm(results, unit="text", disable=not sys.stderr.isatty()):
            out.write(line + "\n")


@main.command("process")
@click.option("--workers", type=click.IntRange(min=1), help=_WORKERS_HELP)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Articles per claimed batch (one transaction).  [default: 64]",
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many articles.")
def process_command(workers: int | None, batch_size: int | None, limit: int | None) -> None:
    """NLP and entities for every extracted article not yet processed.

    Batches are claimed with row locks, so several `vnnews process` runs (or
    Airflow tasks) share a backlog; an interrupted run loses and repeats
    nothing: re-run it to continue.
    """
    from pipeline import process

    summary = process.process_pending(
        _database_url(),
        workers=workers or _default_workers(),
        batch_size=batch_size or process.DEFAULT_BATCH_SIZE,
        limit=limit,
        progress=sys.stderr.isatty(),
    )
    click.echo(summary.format(), err=True)


# --- stories: ingest, cluster, stories (owner: cluster) ------------------------


@main.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--workers", type=click.IntRange(min=1), help=_WORKERS_HELP)
@click.option("--no-cluster", is_flag=True, help="Import and process only; cluster later.")
def ingest_command(path: Path, workers: int | None, no_cluster: bool) -> None:
    """Import already-extracted articles from a JSON Lines file, then process and cluster them.

    One object per line: url, title, body, published_at, publisher (optional id,
    lead, author; other fields are ignored). A null url becomes
    urn:vnnews:PUBLISHER:ID. Re-ingesting a file adds nothing. Bad lines are
    reported with their number and skipped.
    """
    from pipeline import ingest

    loaded = ingest.load_file(
        _database_url(),
        path,
        workers=workers or _default_workers(),
        cluster_after=not no_cluster,
        progress=sys.stderr.isatty(),
    )
    summary = loaded.ingested
    for error in summary.error_lines:
        click.echo(f"{path}:{error.line}: skipped: {error.reason}", err=True)
    if summary.errors > len(summary.error_lines):
        click.echo(f"... and {summary.errors - len(summary.error_lines)} more", err=True)
    click.echo(summary.format(), err=True)
    click.echo(loaded.processed.format(), err=True)
    if loaded.clustered is not None:
        click.echo(loaded.clustered.format(), err=True)


@main.command("cluster")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many articles.")
@click.option("--reset", is_flag=True, help="Forget all stories and cluster every article again.")
def cluster_command(limit: int | None, reset: bool) -> None:
    """Assign every processed article not yet in a story, in publication order.

    One writer at a time (a second run waits); an interrupted run loses and
    repeats nothing: re-run it to continue.
    """
    from pipeline import cluster

    with db.connect(_database_url()) as conn:
        if reset:
            click.echo(f"reset: {cluster.reset(conn)} article(s) to cluster", err=True)
        click.echo(cluster.cluster_pending(conn, limit=limit).format(), err=True)


def _vietnam_iso(value: object) -> str:
    """JSON for timestamps: ISO 8601 in Vietnam time."""
    if isinstance(value, datetime):
        return value.astimezone(VIETNAM).isoformat()
    return str(value)


@main.command("stories")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only stories with an article published since this date (Vietnam time).",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def stories_command(since: datetime | None, limit: int, fmt: str) -> None:
    """List stories, most recently active first, with the articles that cover them."""
    from pipeline import cluster

    with db.connect(_database_url()) as conn:
        stories = cluster.list_stories(conn, since=_local(since), limit=limit)
    if fmt == "json":
        keys = ("story_id", "label", "first_published_at", "last_published_at", "articles")
        payload = [{key: story[key] for key in keys} for story in stories]
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=_vietnam_iso))
        return
    for story in stories:
        last = story["last_published_at"]
        when = last.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M") if last else "undated         "
        click.echo(
            f"{story['story_id']:>7}  {when}  {story['article_count']:>3} art."
            f" {story['outlet_count']:>2} outl.  {story['label']}"
        )


@main.command("split-story")
@click.argument("story_id", type=int)
@click.argument("article_ids", type=int, nargs=-1, required=True)
def split_story_command(story_id: int, article_ids: tuple[int, ...]) -> None:
    """Move ARTICLE_IDS out of STORY_ID into a story of their own (a manual correction)."""
    from pipeline import cluster

    with db.connect(_database_url()) as conn:
        try:
            new_id = cluster.split_story(conn, story_id, article_ids)
        except cluster.SplitError as exc:
            fail(str(exc))
    click.echo(f"story {new_id} now holds article(s) {', '.join(map(str, sorted(article_ids)))}")
