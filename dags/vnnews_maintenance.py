"""vnnews_maintenance: daily housekeeping of the news database (04:30 Vietnam time,
``VNNEWS_MAINTENANCE_SCHEDULE``), after the nightly crawl.

- prune_raw_html: delete raw HTML older than ``raw_html_max_age_days`` (default
  pipeline.maintenance.RAW_HTML_MAX_AGE), never pages still waiting for extraction;
- retry_sweep: URLs given up after transient failures (timeouts, 5xx, ...) in
  the last days get one more attempt in the next crawl;
- vacuum_analyze: dead row versions cleared and fresh planner statistics, once
  the day's writes are done;
- source_health: the per-source health table in the log, problems as warnings.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from vnnews_common import (
    DAG_ARGS,
    DEFAULT_MAINTENANCE_SCHEDULE,
    database_url,
    ready_database,
    schedule_from_env,
)

log = logging.getLogger(__name__)


@dag(
    dag_id="vnnews_maintenance",
    schedule=schedule_from_env("VNNEWS_MAINTENANCE_SCHEDULE", DEFAULT_MAINTENANCE_SCHEDULE),
    dagrun_timeout=timedelta(hours=2),
    tags=["vnnews", "maintenance"],
    params={
        "raw_html_max_age_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Prune raw HTML fetched more than this many days ago (default 30)",
        ),
    },
    doc_md=__doc__,
    **DAG_ARGS,
)
def vnnews_maintenance() -> None:
    @task
    def prune_raw_html(params: dict[str, Any] | None = None) -> dict[str, int]:
        from pipeline import db, maintenance

        days = (params or {}).get("raw_html_max_age_days")
        age = timedelta(days=days) if days else maintenance.RAW_HTML_MAX_AGE
        with db.connect(ready_database()) as conn:
            result = maintenance.prune_raw_pages(conn, age)
        return {"pages": result.pages, "stored_bytes": result.stored_bytes}

    @task
    def retry_sweep() -> dict[str, int]:
        from pipeline import db, maintenance

        with db.connect(ready_database()) as conn:
            return dict(maintenance.retry_transient_failures(conn))

    @task
    def vacuum_analyze() -> int:
        from pipeline import db, maintenance

        with db.connect(database_url()) as conn:
            return len(maintenance.vacuum_analyze(conn))

    @task
    def source_health() -> dict[str, Any]:
        from pipeline import db, maintenance

        with db.connect(ready_database()) as conn:
            rows = maintenance.source_health(conn)
        log.info("source health:\n%s", maintenance.format_health(rows))
        flagged = {row.source: maintenance.unhealthy(row) for row in rows}
        flagged = {source: problems for source, problems in flagged.items() if problems}
        for source, problems in flagged.items():
            log.warning("source %s needs a look: %s", source, "; ".join(problems))
        return {
            "sources": len(rows),
            "articles_24h": sum(row.articles_24h for row in rows),
            "flagged": flagged,
        }

    [prune_raw_html(), retry_sweep()] >> vacuum_analyze()
    source_health()


vnnews_maintenance()
