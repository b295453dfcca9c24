"""vnnews_process: NLP and entities for every extracted article, run when the crawl
announces new articles (asset ``vnnews_articles_extracted``).

plan → process (mapped: N tasks) → announce. Every mapped task runs the same
loop: claim a batch of pending articles with ``SELECT … FOR UPDATE SKIP
LOCKED``, analyse it, store the results and advance the articles' stage in the
same transaction, until no batch is left. N tasks therefore share the backlog
without overlap, and a task killed mid-batch loses and repeats nothing.

N is ``VNNEWS_PROCESS_TASKS`` (default 2), fewer for a small backlog; give
it the Celery workers' total concurrency when the volume grows. Batches are
``VNNEWS_PROCESS_BATCH_SIZE`` articles (default: pipeline.process's 64).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException
from vnnews_common import (
    ARTICLES_EXTRACTED,
    ARTICLES_PROCESSED,
    DAG_ARGS,
    PROCESS_TIMEOUT,
    database_url,
    process_batch_size,
    process_tasks,
    ready_database,
)

log = logging.getLogger(__name__)


@task(execution_timeout=PROCESS_TIMEOUT)
def process(worker: int) -> dict[str, int]:
    """Claim batches until none is left, with one analysis process (the map index is
    ``worker``). Defined at module level so tests can run two at once outside Airflow."""
    from pipeline.process import process_pending

    summary = process_pending(database_url(), workers=1, batch_size=process_batch_size())
    log.info("worker %d: %s", worker, summary.format())
    return {
        "articles": summary.articles,
        "batches": summary.batches,
        "mentions": summary.mentions,
        "failed_fields": summary.failed_fields,
    }


@dag(
    dag_id="vnnews_process",
    schedule=[ARTICLES_EXTRACTED],
    dagrun_timeout=timedelta(hours=12),
    tags=["vnnews", "process"],
    doc_md=__doc__,
    **DAG_ARGS,
)
def vnnews_process() -> None:
    @task
    def plan() -> list[int]:
        """One worker number per mapped task: enough tasks for the backlog, at most N."""
        import math

        from pipeline import db, maintenance

        with db.connect(ready_database()) as conn:
            waiting = maintenance.backlog(conn).to_process
        workers = min(process_tasks(), math.ceil(waiting / process_batch_size()))
        log.info("%d articles to process: %d worker task(s)", waiting, workers)
        return list(range(workers))

    @task(outlets=[ARTICLES_PROCESSED])
    def announce(results: list[dict[str, int]], outlet_events: Any = None) -> dict[str, int]:
        """Update the asset (scheduling vnnews_cluster) when articles wait for clustering."""
        from pipeline import db, maintenance

        results = results[:]  # a slice is fetched in one request
        processed = sum(r["articles"] for r in results)
        failed = sum(r["failed_fields"] for r in results)
        with db.connect(database_url()) as conn:
            waiting = maintenance.backlog(conn)
        log.info(
            "process: %d articles by %d tasks, %d fields failed analysis;"
            " %d articles wait for clustering, %d still for processing",
            processed,
            len(results),
            failed,
            waiting.to_cluster,
            waiting.to_process,
        )
        if not waiting.to_cluster:
            raise AirflowSkipException("no articles to cluster: the asset is left alone")
        extra = {"articles_processed": processed, "to_cluster": waiting.to_cluster}
        outlet_events[ARTICLES_PROCESSED].extra = extra
        return extra

    announce(process.expand(worker=plan()))


vnnews_process()
