"""End to end under Airflow: vnnews_crawl, vnnews_process and vnnews_cluster run with
``dag.test()`` against newsim serving the clustering fixture as five publishers,
into a real Postgres; the articles, entities, stories and asset events are checked,
then a second crawl (nothing new) and vnnews_maintenance.

``dag.test()`` runs every task in one process with Airflow's real task runner
(mapped tasks, XComs, asset events) and a SQLite metadata database in a
temporary AIRFLOW_HOME; it runs in a subprocess (this file run as a script) so
the test session does not inherit Airflow's settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import FIXTURES
from test_dags import airflow_env, run_script

pytestmark = [pytest.mark.slow, pytest.mark.shared]

CORPUS = FIXTURES / "cluster_articles.jsonl"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME with a migrated SQLite metadata database."""
    home = tmp_path_factory.mktemp("airflow")
    subprocess.run(
        ["airflow", "db", "migrate"],
        env=airflow_env(home),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return home


def test_crawl_process_cluster_with_dag_test(newsim, database_url, airflow_home, tmp_path):
    site = newsim("--articles", str(CORPUS), "--crawl-delay", "0")
    sources = site.sources_yaml(tmp_path / "sources.yaml")
    served = {a["url"]: a for a in site.truth()["articles"]}

    report = run_script(
        Path(__file__),
        airflow_env(airflow_home, DATABASE_URL=database_url),
        str(sources),
        timeout=900,
    )

    runs = report["runs"]
    assert [r["state"] for r in runs] == ["success"] * 5, runs
    crawl, process, cluster, recrawl, maintenance = runs
    assert crawl["tasks"]["crawl"] == ["success", "success"]  # 5 sources in chunks of 4
    assert crawl["labels"]["crawl"][1] == "tin-e.example"  # map index named by its sources
    assert crawl["tasks"]["announce"] == ["success"]
    assert process["tasks"]["process"] == ["success"]
    assert recrawl["tasks"]["announce"] == ["skipped"]  # nothing new: no asset event

    with psycopg.connect(database_url) as conn:
        stored = dict(conn.execute("SELECT url, stage FROM news.articles"))
        states = dict(conn.execute("SELECT state, count(*) FROM news.frontier GROUP BY state"))
        analysed = conn.execute("SELECT count(*) FROM news.article_nlp").fetchone()[0]
        province = conn.execute(
            "SELECT count(DISTINCT m.article_id) FROM news.entity_mentions m"
            " JOIN news.entities e ON e.id = m.entity_id"
            " WHERE e.type = 'LOC' AND e.canonical_name = 'Quảng Bình'"
        ).fetchone()[0]
        stories = conn.execute(
            "SELECT story_id, array_agg(title ORDER BY title) FROM news.v_story_articles"
            " GROUP BY story_id"
        ).fetchall()

    # every served page was fetched once and is an article or was judged not to be one
    assert set(stored) <= set(served)
    assert states == {"extracted": len(stored), "not_article": len(served) - len(stored)}
    assert len(stored) >= 10
    assert set(stored.values()) == {"clustered"}
    assert analysed == len(stored)
    assert province >= 4  # the flood reports name the province
    by_title = {title: story for story, titles in stories for title in titles}
    flood = {by_title[t] for t in by_title if "Quảng Bình" in t}
    match = {by_title[t] for t in by_title if "Thái Lan" in t}
    assert len(flood) == 1 and len(match) == 1 and flood != match
    assert len(stories) < len(stored)

    health = maintenance["results"]["source_health"]
    assert health["sources"] == 5 and health["articles_24h"] == len(stored)
    assert maintenance["results"]["prune_raw_html"]["pages"] == 0  # every page is recent
    assert maintenance["results"]["vacuum_analyze"] > 10  # tables vacuumed and analysed

    events = report["asset_events"]
    assert [e["asset"] for e in events] == [
        "vnnews_articles_extracted",
        "vnnews_articles_processed",
        "vnnews_stories_updated",
    ]
    assert events[0]["extra"] == {"articles_stored": len(stored), "to_process": len(stored)}
    assert events[1]["extra"]["articles_processed"] == len(stored)
    assert events[2]["extra"]["articles"] == len(stored)


# --- run as a script: the three DAGs with dag.test(), then a second crawl -----------------


def _run_dags(sources_file: str) -> dict:
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    dags = Path(__file__).resolve().parent.parent / "dags"
    bag = BundleDagBag(dags, bundle_path=dags, bundle_name="dags-folder")
    runs = []
    for dag_id, conf in [
        ("vnnews_crawl", {"sources_file": sources_file}),
        ("vnnews_process", None),
        ("vnnews_cluster", None),
        ("vnnews_crawl", {"sources_file": sources_file}),
        ("vnnews_maintenance", None),
    ]:
        run = bag.dags[dag_id].test(run_conf=conf)
        tasks: dict[str, list[str]] = {}
        labels: dict[str, list[str]] = {}
        for ti in sorted(run.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
            tasks.setdefault(ti.task_id, []).append(_value(ti.state))
            labels.setdefault(ti.task_id, []).append(ti.rendered_map_index)
        results = {
            ti.task_id: ti.xcom_pull(task_ids=ti.task_id)
            for ti in run.get_task_instances()
            if dag_id == "vnnews_maintenance"
        }
        runs.append(
            {
                "dag_id": dag_id,
                "state": _value(run.state),
                "tasks": tasks,
                "labels": labels,
                "results": results,
            }
        )
    with create_session() as session:
        events = [
            {"asset": e.asset.name, "extra": e.extra}
            for e in session.query(AssetEvent).order_by(AssetEvent.id)
        ]
    return {"runs": runs, "asset_events": events}


def _value(state: object) -> object:
    """A state enum's plain value (states may also come back as plain strings)."""
    return getattr(state, "value", state)


if __name__ == "__main__":
    print(json.dumps(_run_dags(sys.argv[1]), default=str))
