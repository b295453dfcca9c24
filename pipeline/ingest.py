"""Loading already-extracted articles from JSON Lines (datasets, archives, other crawlers).

One JSON object per line with ``url, title, body, published_at, publisher`` and
optionally ``id, lead, author``; every other field is ignored. In particular a
``cluster_id`` (gold labels in evaluation sets) is never read, so the story
stage cannot learn from it.

Rows land in ``news.articles`` at stage 'extracted', exactly where the crawler
leaves them, so processing and clustering treat them like crawled pages. The
URL is the identity (http(s) URLs canonicalised as the crawler does, so an
article both crawled and ingested is stored once): re-ingesting a file adds
nothing. A record without a URL gets a stable synthetic one,
``urn:vnnews:<publisher>:<id>``. A bad line is
reported with its number and skipped; it never stops the load and is never
dropped silently.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from pipeline import urls

if TYPE_CHECKING:
    from pipeline.cluster import ClusterSummary
    from pipeline.process import ProcessSummary

log = logging.getLogger(__name__)

#: Rows per transaction: a crash loses at most one batch of work (re-ingesting
#: skips what was committed), and a batch's round trip is amortised over many rows.
BATCH_SIZE = 500

#: Bad lines kept verbatim in the summary (all are counted).
MAX_REPORTED_ERRORS = 50

INSERT_ARTICLE = """
INSERT INTO news.articles (url, publisher, external_id, title, lead, body, author, published_at)
VALUES (%(url)s, %(publisher)s, %(external_id)s, %(title)s, %(lead)s, %(body)s, %(author)s,
        %(published_at)s)
ON CONFLICT (url) DO NOTHING
RETURNING id
"""


class RecordError(ValueError):
    """A line that cannot become an article; the message says why."""


@dataclass(frozen=True)
class IngestRecord:
    url: str
    publisher: str
    external_id: str | None
    title: str
    lead: str | None
    body: str
    author: str | None
    published_at: datetime | None


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str


@dataclass
class IngestSummary:
    lines: int = 0
    inserted: int = 0
    already_present: int = 0
    errors: int = 0
    error_lines: list[LineError] = field(default_factory=list)

    def format(self) -> str:
        return (
            f"read {self.lines} line(s): {self.inserted} new article(s), "
            f"{self.already_present} already present, {self.errors} bad line(s) skipped"
        )


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _text(record: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = record.get(key)
    if value is None:
        if required:
            raise RecordError(f"missing {key!r}")
        return None
    if not isinstance(value, str):
        raise RecordError(f"{key!r} must be a string, not {type(value).__name__}")
    value = _nfc(value).strip()
    if required and not value:
        raise RecordError(f"empty {key!r}")
    return value or None


def _published_at(record: dict[str, Any]) -> datetime | None:
    value = record.get("published_at")
    if value is None or value == "":
        return None  # undated: kept, and clustered by the undated rule in cluster.py
    if not isinstance(value, str):
        raise RecordError(f"'published_at' must be an ISO 8601 string, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"'published_at' is not ISO 8601: {value!r}") from None
    if moment.tzinfo is None:
        raise RecordError(f"'published_at' has no UTC offset: {value!r}")
    return moment


def synthetic_url(publisher: str, external_id: str) -> str:
    """The stable stand-in URL for a record that has none."""
    return f"urn:vnnews:{publisher}:{external_id}"


def parse_record(line: str) -> IngestRecord:
    """One JSONL line as an article, or ``RecordError`` saying what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    publisher = _text(record, "publisher", required=True)
    title = _text(record, "title", required=True)
    raw_id = record.get("id")
    if raw_id is not None and not isinstance(raw_id, str | int):
        raise RecordError(f"'id' must be a string or an integer, not {raw_id!r}")
    external_id = str(raw_id) if raw_id is not None and str(raw_id).strip() else None
    url = _text(record, "url", required=False)
    if url is not None and urls.url_bytes(url) > urls.MAX_URL_LENGTH:
        raise RecordError(f"'url' is {urls.url_bytes(url)} bytes long (max {urls.MAX_URL_LENGTH})")
    if url is not None and urls.is_http_url(url):
        try:
            url = urls.canonicalize(url)  # the crawler's identity, so both routes meet
        except urls.UrlError as exc:  # too long once its characters are escaped
            raise RecordError(f"'url': {exc}") from None
    if url is None:
        if external_id is None:
            raise RecordError("no 'url' and no 'id' to derive one from")
        url = synthetic_url(publisher, external_id)
    body = record.get("body")
    if body is not None and not isinstance(body, str):
        raise RecordError(f"'body' must be a string, not {type(body).__name__}")
    return IngestRecord(
        url=url,
        publisher=publisher,
        external_id=external_id,
        title=title,
        lead=_text(record, "lead", required=False),
        body=_nfc(body or "").strip(),  # an empty body is allowed: see cluster.py
        author=_text(record, "author", required=False),
        published_at=_published_at(record),
    )


def _records(path: Path, summary: IngestSummary) -> Iterator[IngestRecord]:
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue  # blank lines are layout, not records
            summary.lines += 1
            try:
                yield parse_record(raw.decode("utf-8"))
            except (RecordError, UnicodeDecodeError) as exc:
                reason = f"not UTF-8 ({exc.reason})" if isinstance(exc, UnicodeDecodeError) else exc
                summary.errors += 1
                log.warning("%s:%d: skipped: %s", path, number, reason)
                if len(summary.error_lines) < MAX_REPORTED_ERRORS:
                    summary.error_lines.append(LineError(number, str(reason)))


def ingest_jsonl(
    conn: psycopg.Connection, path: Path, *, batch_size: int = BATCH_SIZE
) -> IngestSummary:
    """Insert the file's articles at stage 'extracted', committing every ``batch_size`` records."""
    summary = IngestSummary()
    batch: list[IngestRecord] = []

    def flush() -> None:
        with conn.cursor() as cur:
            for record in batch:
                cur.execute(INSERT_ARTICLE, record.__dict__)
                if cur.fetchone() is None:
                    summary.already_present += 1
                else:
                    summary.inserted += 1
        conn.commit()
        batch.clear()

    for record in _records(path, summary):
        batch.append(record)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    log.info("%s: %s", path, summary.format())
    return summary


@dataclass(frozen=True)
class LoadSummary:
    """What ``load_file`` did at each stage (``clustered`` is None when skipped)."""

    ingested: IngestSummary
    processed: ProcessSummary
    clustered: ClusterSummary | None


def load_file(
    database_url: str,
    path: Path,
    *,
    workers: int = 1,
    cluster_after: bool = True,
    progress: bool = False,
) -> LoadSummary:
    """Ingest a JSONL file, then process and (unless told not to) cluster what is pending."""
    from pipeline import cluster, db, process

    with db.connect(database_url) as conn:
        ingested = ingest_jsonl(conn, path)
    processed = process.process_pending(database_url, workers=workers, progress=progress)
    clustered = None
    if cluster_after:
        with db.connect(database_url) as conn:
            clustered = cluster.cluster_pending(conn)
    return LoadSummary(ingested, processed, clustered)
