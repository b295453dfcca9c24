"""The processing stage over the database: extracted articles -> NLP + entities.

A batch is claimed with ``SELECT … FOR UPDATE SKIP LOCKED``, analysed, and its
results written in the same transaction that moves ``stage`` from
'extracted' to 'processed'. A worker killed mid-batch therefore leaves its
articles untouched and unlocked (nothing lost), a committed batch is never
claimed again (nothing repeated), and several workers or Airflow tasks share
a backlog without overlap.

Entities are shared across articles by (type, key); each batch upserts its
entities in (type, key) order so concurrent batches lock them in the same
order and cannot deadlock.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from tqdm import tqdm

from pipeline import db, nlp
from pipeline.ner import canonical_key, canonicalise_persons

log = logging.getLogger(__name__)

#: Articles per claimed batch (one transaction). Large enough to keep every
#: pool worker busy and amortise the round trips; small enough that a killed
#: worker loses little work and a batch holds its row locks for seconds, not
#: minutes. A Tuổi Trẻ article (title + lead + body) costs ~0.06 CPU-s
#: (bench/nlp.py: 2.3 CPU-s for 40), so 64 articles are ~2 s on two workers.
DEFAULT_BATCH_SIZE = 64

#: Articles handed to a pool worker at a time. One: an article takes tens of
#: milliseconds against ~0.1 ms for a trip through the pool's queues, and
#: lengths vary tenfold, so larger chunks only leave workers idle at the end
#: of each batch.
POOL_CHUNK_SIZE = 1


@dataclass(frozen=True)
class ArticleText:
    """What the stage reads from one article."""

    id: int
    title: str
    lead: str | None
    body: str
    seen_at: datetime  # published_at, or extracted_at when unknown


@dataclass(frozen=True)
class FoundMention:
    """An entity mention of one field, with the key that identifies its entity."""

    field: str  # title | lead | body
    start: int
    end: int
    type: str
    surface: str
    canonical: str
    key: str  # ner.canonical_key(type, canonical)


@dataclass(frozen=True)
class ArticleResult:
    """What the stage stores for one article (the layout is in ``002_nlp.sql``).

    Built in the worker, JSON included, so what travels back to the parent is
    a few strings rather than thousands of token objects, and the parent only
    writes.
    """

    article_id: int
    segmented_title: str
    segmented_lead: str | None
    segmented: str
    sentences_json: str  # {"title": [[start, end], ...], "lead": ..., "body": ...}
    tokens_json: str  # {"title": [[start, end, "POS"], ...], ...}
    mentions: tuple[FoundMention, ...]
    failed_fields: tuple[str, ...] = ()  # analysis raised; stored empty (see the log)


def _analyse_field(article_id: int, name: str, text: str) -> nlp.Analysis | None:
    """The field's analysis, or None (logged) if it raised.

    A text that trips a bug must not block the backlog: every later batch
    would claim it again. The article is stored with that field empty and
    the failure is counted in the run's summary.
    """
    try:
        return nlp.analyse(text)
    except Exception:
        log.exception("article %d: analysing the %s failed; storing it empty", article_id, name)
        return None


def process_article(article: ArticleText) -> ArticleResult:
    """Analyse title, lead and body (offsets per field) and shape them for storage."""
    fields = {"title": article.title, "lead": article.lead, "body": article.body}
    tried = {
        name: _analyse_field(article.id, name, text)
        for name, text in fields.items()
        if text is not None
    }
    failed = tuple(name for name, analysis in tried.items() if analysis is None)
    analyses = {
        name: analysis or nlp.Analysis(fields[name], (), "", ()) for name, analysis in tried.items()
    }
    sentences = {name: [[s.start, s.end] for s in a.sentences] for name, a in analyses.items()}
    tokens = {
        name: [[t.start, t.end, t.pos] for s in a.sentences for t in s.tokens]
        for name, a in analyses.items()
    }
    # each field was analysed apart: carry full person names across them
    fields_found = [(name, m) for name, a in analyses.items() for m in a.entities]
    unified = canonicalise_persons([m for _, m in fields_found])
    mentions = tuple(
        FoundMention(
            name, m.start, m.end, m.type, m.text, m.canonical or m.text,
            canonical_key(m.type, m.canonical or m.text),
        )
        for (name, _), m in zip(fields_found, unified, strict=True)
    )  # fmt: skip
    lead = analyses.get("lead")
    return ArticleResult(
        article_id=article.id,
        segmented_title=analyses["title"].segmented,
        segmented_lead=lead.segmented if lead else None,
        segmented=analyses["body"].segmented,
        sentences_json=json.dumps(sentences, separators=(",", ":")),
        tokens_json=json.dumps(tokens, separators=(",", ":"), ensure_ascii=False),
        mentions=mentions,
        failed_fields=failed,
    )


#: Turns a batch of articles into their results, in order.
Analyser = Callable[[Sequence[ArticleText]], list[ArticleResult]]

#: ``map`` over a worker pool (or the built-in ``map`` for one worker): lazy, in order.
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


#: prctl(2) option: the signal a process receives when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Pool worker set-up: exit when the parent is killed (even by SIGKILL), not linger."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextmanager
def worker_pool(workers: int) -> Iterator[Mapper]:
    """A ``map`` running on ``workers`` processes, started once (in-process when 1).

    The models are loaded here first and the workers are forked from this
    process, so they share the loaded models and start in milliseconds
    (underthesea_core starts no threads, so forking it is safe). Open the pool
    before any database connection so no socket is inherited.
    """
    if workers <= 1:
        yield map
        return
    nlp.models()
    # Objects alive now (models, dictionaries, caches) move out of the garbage
    # collector's reach, so collections in the workers never touch (and thus
    # copy) the pages they share with this process.
    gc.freeze()
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=_die_with_parent) as pool:
            yield functools.partial(pool.imap, chunksize=POOL_CHUNK_SIZE)
    finally:
        gc.unfreeze()


@contextmanager
def analyser(workers: int) -> Iterator[Analyser]:
    """An ``Analyser`` on ``workers`` processes (see ``worker_pool``)."""
    with worker_pool(workers) as mapper:
        yield lambda articles: list(mapper(process_article, articles))


def analyse_json_line(line: str) -> str:
    """One ``vnnews nlp --jsonl`` record: ``{id, text}`` in, the analysis out (JSON lines)."""
    record = json.loads(line)
    result = nlp.analysis_json(nlp.analyse(record["text"]))
    return json.dumps({"id": record.get("id"), **result}, ensure_ascii=False)


# --- storage -------------------------------------------------------------------

CLAIM = """
SELECT id, title, lead, body, coalesce(published_at, extracted_at)
FROM news.articles
WHERE stage = 'extracted'
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

COUNT_PENDING = "SELECT count(*) FROM news.articles WHERE stage = 'extracted'"

UPSERT_NLP = """
INSERT INTO news.article_nlp
    (article_id, nlp_version, segmented_title, segmented_lead, segmented, sentences, tokens)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)
ON CONFLICT (article_id) DO UPDATE SET
    nlp_version = EXCLUDED.nlp_version,
    segmented_title = EXCLUDED.segmented_title,
    segmented_lead = EXCLUDED.segmented_lead,
    segmented = EXCLUDED.segmented,
    sentences = EXCLUDED.sentences,
    tokens = EXCLUDED.tokens,
    processed_at = now()
"""

# An article sent back to 'extracted' (its text changed) is processed again: its
# old mentions are replaced and taken off its entities' mention counts.
OLD_MENTIONS = """
SELECT e.type, e.key, e.canonical_name, count(*)
FROM news.entity_mentions AS m
JOIN news.entities AS e ON e.id = m.entity_id
WHERE m.article_id = ANY(%s)
GROUP BY e.type, e.key, e.canonical_name
"""
DELETE_MENTIONS = "DELETE FROM news.entity_mentions WHERE article_id = ANY(%s)"

# ``count`` is the change in mentions (negative for an entity only the old text
# mentioned); ``first``/``last`` are NULL then, which least/greatest ignore.
UPSERT_ENTITY = """
INSERT INTO news.entities AS e
    (type, key, canonical_name, aliases, first_seen_at, last_seen_at, mention_count)
VALUES (%(type)s, %(key)s, %(canonical)s, %(aliases)s,
        coalesce(%(first)s::timestamptz, now()), coalesce(%(last)s::timestamptz, now()),
        %(count)s)
ON CONFLICT (type, key) DO UPDATE SET
    aliases = ARRAY(SELECT DISTINCT a FROM unnest(e.aliases || EXCLUDED.aliases) AS a ORDER BY a),
    first_seen_at = least(e.first_seen_at, %(first)s::timestamptz),
    last_seen_at = greatest(e.last_seen_at, %(last)s::timestamptz),
    mention_count = e.mention_count + EXCLUDED.mention_count
RETURNING id
"""

COPY_MENTIONS = """
COPY news.entity_mentions (article_id, field, start_offset, end_offset, entity_id, surface)
FROM STDIN
"""

MARK_PROCESSED = "UPDATE news.articles SET stage = 'processed' WHERE id = ANY(%s)"


def _nlp_row(result: ArticleResult) -> tuple:
    return (
        result.article_id,
        nlp.NLP_VERSION,
        result.segmented_title,
        result.segmented_lead,
        result.segmented,
        result.sentences_json,
        result.tokens_json,
    )


@dataclass
class _EntityGroup:
    """The mentions of one (type, key) within a batch, before the upsert."""

    canonical: str
    aliases: set[str] = field(default_factory=set)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int = 0

    def add(self, mention_text: str, canonical: str, seen_at: datetime) -> None:
        self.aliases.update((mention_text, canonical))
        self.first_seen = min(self.first_seen or seen_at, seen_at)
        self.last_seen = max(self.last_seen or seen_at, seen_at)
        self.count += 1


def _upsert_entities(
    cur: psycopg.Cursor, groups: dict[tuple[str, str], _EntityGroup]
) -> dict[tuple[str, str], int]:
    """Insert or update the batch's entities; returns their ids by (type, key)."""
    order = sorted(groups)  # one lock order for every worker: no deadlocks
    if not order:
        return {}
    rows = [
        {
            "type": kind,
            "key": key,
            "canonical": g.canonical,
            "aliases": sorted(g.aliases),
            "first": g.first_seen,
            "last": g.last_seen,
            "count": g.count,
        }
        for kind, key in order
        for g in (groups[(kind, key)],)
    ]
    cur.executemany(UPSERT_ENTITY, rows, returning=True)
    ids = {}
    for key in order:
        ids[key] = cur.fetchone()[0]
        cur.nextset()
    return ids


def _store(
    conn: psycopg.Connection, articles: Sequence[ArticleText], results: Sequence[ArticleResult]
) -> int:
    """Write analyses and mentions of a claimed batch; returns the number of mentions."""
    ids = [a.id for a in articles]
    with conn.cursor() as cur:
        cur.executemany(UPSERT_NLP, [_nlp_row(r) for r in results])
        groups: dict[tuple[str, str], _EntityGroup] = {}
        for kind, key, canonical, count in cur.execute(OLD_MENTIONS, (ids,)).fetchall():
            groups.setdefault((kind, key), _EntityGroup(canonical)).count -= count
        cur.execute(DELETE_MENTIONS, (ids,))

        mentions: dict[tuple[int, str, int], FoundMention] = {}
        for article, result in zip(articles, results, strict=True):
            for m in result.mentions:
                group = groups.setdefault((m.type, m.key), _EntityGroup(m.canonical))
                group.add(m.surface, m.canonical, article.seen_at)
                mentions.setdefault((article.id, m.field, m.start), m)

        entity_ids = _upsert_entities(cur, groups)
        with cur.copy(COPY_MENTIONS) as copy:
            for (article_id, _, _), m in mentions.items():
                entity_id = entity_ids[(m.type, m.key)]
                copy.write_row((article_id, m.field, m.start, m.end, entity_id, m.surface))
        cur.execute(MARK_PROCESSED, (ids,))
    return len(mentions)


@dataclass(frozen=True)
class BatchResult:
    articles: int
    mentions: int
    failed_fields: int = 0


def process_batch(conn: psycopg.Connection, batch_size: int, analyse: Analyser) -> BatchResult:
    """Claim up to ``batch_size`` pending articles, analyse and store them, in one transaction.

    Returns what was done (0 articles when nothing is pending). ``conn``
    should be in autocommit mode (as ``process_pending`` opens it) so the
    batch is its own transaction; otherwise it joins the caller's.
    """
    with conn.transaction():
        rows = conn.execute(CLAIM, (batch_size,)).fetchall()
        if not rows:
            return BatchResult(0, 0)
        articles = [ArticleText(*row) for row in rows]
        results = analyse(articles)
        mentions = _store(conn, articles, results)
    log.info("processed %d articles (%d mentions)", len(articles), mentions)
    return BatchResult(len(articles), mentions, sum(len(r.failed_fields) for r in results))


@dataclass(frozen=True)
class ProcessSummary:
    articles: int
    batches: int
    mentions: int
    seconds: float
    failed_fields: int = 0

    def format(self) -> str:
        rate = self.articles / self.seconds if self.seconds else 0.0
        failures = (
            f"; {self.failed_fields} field(s) failed analysis and were stored empty (see the log)"
            if self.failed_fields
            else ""
        )
        return (
            f"processed {self.articles} article(s) in {self.batches} batch(es), "
            f"{self.mentions} entity mention(s), {self.seconds:.1f} s ({rate:.1f} articles/s)"
            + failures
        )


def process_pending(
    database_url: str | None,
    *,
    workers: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    progress: bool = False,
) -> ProcessSummary:
    """Process pending articles batch by batch until none is left (or ``limit`` is reached)."""
    started = time.monotonic()
    done = batches = mentions = failed = 0
    with analyser(workers) as analyse, db.connect(database_url, autocommit=True) as conn:
        total = conn.execute(COUNT_PENDING).fetchone()[0]
        if limit is not None:
            total = min(total, limit)
        with tqdm(total=total, unit="article", disable=not progress) as bar:
            while limit is None or done < limit:
                size = batch_size if limit is None else min(batch_size, limit - done)
                result = process_batch(conn, size, analyse)
                if not result.articles:
                    break
                done += result.articles
                mentions += result.mentions
                failed += result.failed_fields
                batches += 1
                bar.update(result.articles)
    return ProcessSummary(done, batches, mentions, time.monotonic() - started, failed)
