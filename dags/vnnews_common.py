"""What the vnnews DAGs share: the assets that chain them, task defaults, the
schedule settings and where the news database is.

Not a DAG file (``.airflowignore`` lists it): the DAG files import it, and
Airflow puts the DAGs folder on ``sys.path``. Like the DAG files it imports no
``pipeline`` module at top level, so parsing stays cheap; tasks import what
they call.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable

log = logging.getLogger(__name__)

#: The readers' clock: cron expressions and the analyst's "today" are Vietnam time.
TIMEZONE = "Asia/Ho_Chi_Minh"
START_DATE = pendulum.datetime(2024, 1, 1, tz=TIMEZONE)

# Data-aware scheduling: each stage announces what it left for the next one.
ARTICLES_EXTRACTED = Asset(
    name="vnnews_articles_extracted", uri="x-vnnews://news/articles/extracted", group="vnnews"
)
ARTICLES_PROCESSED = Asset(
    name="vnnews_articles_processed", uri="x-vnnews://news/articles/processed", group="vnnews"
)
STORIES_UPDATED = Asset(
    name="vnnews_stories_updated", uri="x-vnnews://news/stories", group="vnnews"
)

#: The Airflow connection naming the news database (DATABASE_URL otherwise).
DB_CONN_ID = "vnnews_db"

#: Every task retries twice, 2 then 4 minutes later: long enough for a restarted
#: database or a worker replaced by the orchestrator. Each stage commits per
#: batch (per URL, per article), so a retry resumes where the failure left off.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "vnnews",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=1),
}

#: What every vnnews DAG shares: no backfill of missed runs (a crawl pass always
#: takes what the feeds list now), one run at a time (a second run would only
#: wait for the first one's locks).
DAG_ARGS: dict[str, Any] = {
    "start_date": START_DATE,
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}

#: A crawl chunk ends when nothing is due within 30 s (CrawlOptions.max_wait); a
#: first crawl of a large registry at 1 request/s per host takes longer than the
#: default hour, and a timed-out chunk leaves every URL in a recorded state.
CRAWL_TIMEOUT = timedelta(hours=3)
#: Processing runs until the backlog is empty; the first run over a large
#: import is the long one (~0.06 CPU-s per article, pipeline/process.py).
PROCESS_TIMEOUT = timedelta(hours=3)

#: Default crawl schedule: 01:00 Vietnam time, when publishers' servers are quiet
#: and the day's articles are in their feeds. ``VNNEWS_CRAWL_SCHEDULE`` overrides
#: it with any cron expression (``0 * * * *`` for hourly) or ``none`` (manual only).
DEFAULT_CRAWL_SCHEDULE = "0 1 * * *"
#: Housekeeping after the nightly crawl has finished (``VNNEWS_MAINTENANCE_SCHEDULE``).
DEFAULT_MAINTENANCE_SCHEDULE = "30 4 * * *"

#: Fetch threads per crawl task (``CrawlOptions.workers``); each serves one host
#: at a time, so a chunk of this many single-host sources keeps them all busy.
CRAWL_THREADS = 4
#: Sources per crawl task, unless there are so many sources that this would make
#: more than ``MAX_CRAWL_TASKS`` tasks.
SOURCES_PER_TASK = CRAWL_THREADS
#: Mapped crawl tasks per run, far below ``[core] max_map_length`` (1024 by
#: default): a registry of any size is spread over at most this many chunks.
MAX_CRAWL_TASKS = 64

#: Mapped processing tasks when the backlog is large (``VNNEWS_PROCESS_TASKS``).
#: Each claims batches until none is left, so more tasks only help while free
#: worker slots (and cores) exist: set it to the Celery workers' total concurrency.
DEFAULT_PROCESS_TASKS = 2


def schedule_from_env(variable: str, default: str) -> CronTriggerTimetable | None:
    """A cron schedule in Vietnam time from ``variable`` (``none``: manual runs only)."""
    cron = os.environ.get(variable, "").strip() or default
    if cron.lower() == "none":
        return None
    return CronTriggerTimetable(cron, timezone=TIMEZONE)


def process_tasks() -> int:
    return max(1, int(os.environ.get("VNNEWS_PROCESS_TASKS") or DEFAULT_PROCESS_TASKS))


def process_batch_size() -> int:
    """Articles per claimed batch: ``VNNEWS_PROCESS_BATCH_SIZE``, else the stage's default."""
    from pipeline.process import DEFAULT_BATCH_SIZE

    return max(1, int(os.environ.get("VNNEWS_PROCESS_BATCH_SIZE") or DEFAULT_BATCH_SIZE))


def chunk_sources(
    sources: Sequence[tuple[str, str]],
    per_chunk: int = SOURCES_PER_TASK,
    max_chunks: int = MAX_CRAWL_TASKS,
) -> list[list[str]]:
    """Source names in chunks for mapped crawl tasks: (name, homepage) pairs in.

    Sources are ordered by homepage host so the sources of one host land in
    one chunk (and its fetches stay with one task), and chunks grow beyond
    ``per_chunk`` rather than exceed ``max_chunks``.
    """
    if not sources:
        return []
    ordered = sorted(sources, key=lambda s: ((urlsplit(s[1]).hostname or ""), s[0].casefold()))
    size = max(per_chunk, math.ceil(len(ordered) / max_chunks))
    names = [name for name, _ in ordered]
    return [names[i : i + size] for i in range(0, len(names), size)]


def database_url() -> str:
    """The news database: Airflow connection ``vnnews_db``, else ``DATABASE_URL``, else
    the embedded server (``pipeline.db``). Call inside a task; logs no secret."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.log import mask_secret
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pipeline import config, db

    try:
        conn = Connection.get(DB_CONN_ID)
    except AirflowNotFoundException:
        url = db.database_url()
        origin = "DATABASE_URL" if config.database_url_from_env() else "the embedded server"
    else:
        url = make_conninfo(
            host=conn.host,
            port=conn.port,
            user=conn.login,
            password=conn.password,
            dbname=conn.schema,
            **{k: v for k, v in conn.extra_dejson.items() if k in LIBPQ_EXTRA},
        )
        origin = f"connection {DB_CONN_ID}"
    params = conninfo_to_dict(url)
    if params.get("password"):
        mask_secret(params["password"])
    log.info(
        "news database %s:%s/%s (from %s)",
        params.get("host", "local socket"),
        params.get("port", 5432),
        params.get("dbname", ""),
        origin,
    )
    return url


#: Connection extras passed on to libpq (TLS and timeouts); others are ignored.
LIBPQ_EXTRA = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "options"}
)


def ready_database() -> str:
    """``database_url()`` with the schema upgraded: the first task of every DAG calls it."""
    from pipeline import db

    url = database_url()
    with db.connect(url) as conn:
        applied = db.upgrade(conn)
    if applied:
        log.info("applied migrations %s", ", ".join(applied))
    return url
