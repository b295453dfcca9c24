"""vnnews_cluster: assign processed articles to stories, run when processing
announces new articles (asset ``vnnews_articles_processed``).

cluster → announce. Clustering has a single writer: ``cluster_pending`` holds
a Postgres advisory lock while it assigns articles, so a second run (another
DAG run, a ``vnnews cluster`` in a shell) waits for the first instead of
racing it; ``max_active_runs=1`` keeps Airflow from queueing runs behind it.
Each story's label, key terms and top entities are refreshed in the same
transaction that adds an article to it, so they are current when the task
ends. ``announce`` updates ``vnnews_stories_updated`` for consumers of stories.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException
from vnnews_common import (
    ARTICLES_PROCESSED,
    DAG_ARGS,
    STORIES_UPDATED,
    database_url,
    ready_database,
)

log = logging.getLogger(__name__)


@dag(
    dag_id="vnnews_cluster",
    schedule=[ARTICLES_PROCESSED],
    dagrun_timeout=timedelta(hours=6),
    tags=["vnnews", "cluster"],
    doc_md=__doc__,
    **DAG_ARGS,
)
def vnnews_cluster() -> None:
    @task
    def cluster() -> dict[str, int]:
        """Assign every processed article, oldest first (waits for another writer)."""
        from pipeline import db
        from pipeline.cluster import cluster_pending

        with db.connect(ready_database()) as conn:
            summary = cluster_pending(conn)  # logs its summary
        return {
            "articles": summary.articles,
            "created": summary.created,
            "joined": summary.joined,
            "duplicates": summary.duplicates,
            "merges": summary.merges,
        }

    @task(outlets=[STORIES_UPDATED])
    def announce(summary: dict[str, int], outlet_events: Any = None) -> dict[str, Any]:
        """Update the stories asset when stories changed; log the most active ones."""
        from pipeline import db
        from pipeline.cluster import list_stories

        if not summary["articles"]:
            raise AirflowSkipException("no article was clustered: the asset is left alone")
        with db.connect(database_url()) as conn:
            stories = list_stories(conn, limit=STORIES_LOGGED)
        for story in stories:
            log.info(
                "story %d: %d articles from %d outlets: %s",
                story["story_id"],
                story["article_count"],
                story["outlet_count"],
                story["label"],
            )
        outlet_events[STORIES_UPDATED].extra = summary
        return summary

    announce(cluster())


#: Stories listed in the announce task's log (the most recently active).
STORIES_LOGGED = 10

vnnews_cluster()
