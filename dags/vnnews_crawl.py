"""vnnews_crawl: one crawl pass over the sources registry, nightly at 01:00 Vietnam time.

plan → crawl (one mapped task per chunk of sources) → announce. Politeness
holds across parallel tasks and workers because it lives in Postgres: a crawl
worker locks the host's row in ``news.hosts`` (FOR UPDATE SKIP LOCKED) for the
whole fetch and sets its next allowed fetch time, so no two tasks ever fetch
from one host at once, whatever the executor. ``announce`` updates the
``vnnews_articles_extracted`` asset, which schedules vnnews_process, when
articles are waiting to be processed; otherwise it is skipped.

Schedule: ``VNNEWS_CRAWL_SCHEDULE`` (cron, Vietnam time; ``0 * * * *`` for
hourly, ``none`` for manual runs). Sources file: the run's ``sources_file``
param, else ``VNNEWS_SOURCES_FILE``, else the registry shipped with vnnews.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from vnnews_common import (
    ARTICLES_EXTRACTED,
    CRAWL_THREADS,
    CRAWL_TIMEOUT,
    DAG_ARGS,
    DEFAULT_CRAWL_SCHEDULE,
    chunk_sources,
    database_url,
    ready_database,
    schedule_from_env,
)

log = logging.getLogger(__name__)

#: Extraction inside a crawl task runs in one thread of the task process
#: (``CrawlOptions.processes=0``): a task then uses about one core, and Airflow
#: scales with more mapped tasks and worker slots instead of processes forked
#: inside tasks (docs/airflow.md has the measurement).
EXTRACT_PROCESSES = 0


@dag(
    dag_id="vnnews_crawl",
    schedule=schedule_from_env("VNNEWS_CRAWL_SCHEDULE", DEFAULT_CRAWL_SCHEDULE),
    dagrun_timeout=timedelta(hours=8),
    tags=["vnnews", "crawl"],
    params={
        "sources_file": Param(
            None, type=["null", "string"], description="Sources YAML (default: the registry)"
        ),
        "sources": Param(
            [], type="array", items={"type": "string"}, description="Only these sources"
        ),
    },
    doc_md=__doc__,
    **DAG_ARGS,
)
def vnnews_crawl() -> None:
    @task
    def plan(params: dict[str, Any] | None = None) -> list[list[str]]:
        """Check the registry and the database, then split the sources into chunks."""
        from pipeline.sources import load_sources

        ready_database()
        sources_file = load_sources(_sources_path(params))
        selected = sources_file.select(list(params["sources"]))
        chunks = chunk_sources([(s.name, s.homepage) for s in selected])
        log.info("%d sources from %s in %d chunks", len(selected), sources_file.path, len(chunks))
        return chunks

    @task(execution_timeout=CRAWL_TIMEOUT, map_index_template="{{ chunk_label }}")
    def crawl(names: list[str], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One crawl pass over these sources: poll feeds, fetch and extract what is new."""
        from pipeline.crawl import CrawlOptions
        from pipeline.crawl import crawl as crawl_pass
        from pipeline.sources import load_sources

        get_current_context()["chunk_label"] = ", ".join(names)
        summary = crawl_pass(
            database_url(),
            load_sources(_sources_path(params)),
            source_names=names,
            options=CrawlOptions(workers=CRAWL_THREADS, processes=EXTRACT_PROCESSES),
        )
        log.info("%s", summary.format())
        return {
            "articles": summary.articles_stored,
            "new_urls": summary.new_urls,
            "pages": summary.pages_fetched,
            "feeds_failed": summary.feeds_failed,
            "failures": dict(summary.failures),
        }

    @task(outlets=[ARTICLES_EXTRACTED])
    def announce(results: list[dict[str, Any]], outlet_events: Any = None) -> dict[str, Any]:
        """Update the asset when articles wait for processing (new or left by a failed run)."""
        from collections import Counter

        from pipeline import db, maintenance

        totals = Counter()
        failures = Counter()
        for result in results[:]:  # a slice is fetched in one request
            totals.update({k: v for k, v in result.items() if k != "failures"})
            failures.update(result["failures"])
        with db.connect(database_url()) as conn:
            waiting = maintenance.backlog(conn).to_process
        log.info(
            "crawl: %d articles stored, %d new URLs, %d pages fetched, %d feeds failed;"
            " failures by reason: %s; %d articles wait for processing",
            totals["articles"],
            totals["new_urls"],
            totals["pages"],
            totals["feeds_failed"],
            dict(failures.most_common()) or "none",
            waiting,
        )
        if not waiting:
            raise AirflowSkipException("no articles to process: the asset is left alone")
        extra = {"articles_stored": totals["articles"], "to_process": waiting}
        outlet_events[ARTICLES_EXTRACTED].extra = extra
        return extra

    announce(crawl.expand(names=plan()))


def _sources_path(params: dict[str, Any] | None) -> str | None:
    return (params or {}).get("sources_file") or os.environ.get("VNNEWS_SOURCES_FILE") or None


vnnews_crawl()
