"""DAG integrity: every file in dags/ imports without errors under Airflow's own
DagBag, and every DAG and task carries what operating it needs.

Airflow runs in a subprocess (this file run as a script), with AIRFLOW_HOME in
a temporary folder: importing Airflow configures logging and settings for the
whole process, which the rest of the test session should not inherit.
`airflow_env` is shared with the other Airflow tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DAGS = REPO / "dags"
PLUGINS = REPO / "plugins"
DAG_IDS = {"vnnews_crawl", "vnnews_process", "vnnews_cluster", "vnnews_maintenance"}


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow process for tests: this repo's dags/ and plugins/,
    no examples, the venv's bin first on PATH, nothing inherited from AIRFLOW_* or
    DATABASE_URL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW") and k not in ("DATABASE_URL", "VNNEWS_SOURCES_FILE")
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PLUGINS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        VNNEWS_HOME=str(home / "vnnews"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def run_script(script: Path | str, env: dict[str, str], *args: str, timeout: float = 300) -> dict:
    """Run ``script`` (a file, or code as a string) with ``args``; its last stdout line is a
    JSON report."""
    target = [str(script)] if isinstance(script, Path) else ["-c", script]
    proc = subprocess.run(
        [sys.executable, *target, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What Airflow made of dags/ with the default settings."""
    return run_script(Path(__file__), airflow_env(tmp_path_factory.mktemp("airflow")))


def test_dag_files_import_cleanly_and_dags_are_operable(report: dict) -> None:
    assert report["import_errors"] == {}
    assert set(report["dags"]) == DAG_IDS
    for dag_id, dag in report["dags"].items():
        assert "vnnews" in dag["tags"], dag_id
        assert dag["owner"] == "vnnews", dag_id
        assert dag["catchup"] is False and dag["max_active_runs"] == 1, dag_id
        assert dag["dagrun_timeout"] > 0, dag_id
        assert dag["timezone"] == "Asia/Ho_Chi_Minh", dag_id
        for task_id, task in dag["tasks"].items():
            assert task["retries"] >= 1, (dag_id, task_id)
            assert 0 < task["execution_timeout"] <= dag["dagrun_timeout"], (dag_id, task_id)
    # thin DAG files: nothing from pipeline (nor its database driver) at parse time
    assert report["heavy_modules"] == []


def test_schedules_and_assets_chain_the_stages(report: dict) -> None:
    dags = report["dags"]

    assert dags["vnnews_crawl"]["schedule"] == "0 1 * * *"
    assert dags["vnnews_maintenance"]["schedule"] == "30 4 * * *"
    assert dags["vnnews_process"]["schedule"] == ["vnnews_articles_extracted"]
    assert dags["vnnews_cluster"]["schedule"] == ["vnnews_articles_processed"]
    assert dags["vnnews_crawl"]["outlets"] == ["vnnews_articles_extracted"]
    assert dags["vnnews_process"]["outlets"] == ["vnnews_articles_processed"]
    assert dags["vnnews_cluster"]["outlets"] == ["vnnews_stories_updated"]
    assert dags["vnnews_crawl"]["tasks"]["crawl"]["mapped"]
    assert dags["vnnews_process"]["tasks"]["process"]["mapped"]


def test_schedule_from_the_environment(tmp_path: Path) -> None:
    hourly = run_script(
        Path(__file__),
        airflow_env(tmp_path, VNNEWS_CRAWL_SCHEDULE="0 * * * *"),
    )
    assert hourly["dags"]["vnnews_crawl"]["schedule"] == "0 * * * *"
    manual = run_script(Path(__file__), airflow_env(tmp_path, VNNEWS_CRAWL_SCHEDULE="none"))
    assert manual["dags"]["vnnews_crawl"]["schedule"] is None


def test_a_large_registry_stays_within_max_map_length(report: dict) -> None:
    chunks = report["chunks"]

    assert chunks["5000"]["count"] <= chunks["max_crawl_tasks"] < chunks["max_map_length"]
    assert chunks["5000"]["sources"] == 5000  # every source in exactly one chunk
    assert chunks["10"]["sizes"] == [4, 4, 2]
    # the sources of one host share a chunk
    assert chunks["same_host"] == [["A1", "A2", "A3", "B1"], ["B2"]]
    assert chunks["0"]["count"] == 0


# --- run as a script: parse dags/ with Airflow and report as JSON -------------------------


def _report() -> dict:
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.sdk import Asset

    bag = BundleDagBag(DAGS, bundle_path=DAGS, bundle_name="dags-folder")  # puts dags/ on sys.path
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("pipeline", "psycopg"))
    from vnnews_common import MAX_CRAWL_TASKS, chunk_sources

    def schedule(dag) -> object:
        timetable = dag.timetable
        if getattr(timetable, "asset_condition", None) is not None:
            return sorted(a.name for a in timetable.asset_condition.objects)
        return getattr(timetable, "expression", None)  # a cron expression, or no schedule

    dags = {
        dag_id: {
            "tags": sorted(dag.tags),
            "owner": dag.owner,
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else 0,
            "timezone": dag.timezone.name,
            "schedule": schedule(dag),
            "outlets": sorted(o.name for t in dag.tasks for o in t.outlets if isinstance(o, Asset)),
            "tasks": {
                t.task_id: {
                    "retries": t.retries,
                    "execution_timeout": t.execution_timeout.total_seconds()
                    if t.execution_timeout
                    else 0,
                    "mapped": t.is_mapped if hasattr(t, "is_mapped") else False,
                }
                for t in dag.tasks
            },
        }
        for dag_id, dag in bag.dags.items()
    }

    def stats(n: int) -> dict:
        chunks = chunk_sources([(f"s{i}", f"https://h{i}.test/") for i in range(n)])
        return {
            "count": len(chunks),
            "sources": sum(map(len, chunks)),
            "sizes": [len(c) for c in chunks],
        }

    same_host = [
        ("B2", "https://b.test/"),
        ("A2", "https://a.test/x"),
        ("B1", "https://A.test/"),
        ("A1", "https://a.test/"),
        ("A3", "https://a.test/y"),
    ]
    return {
        "import_errors": bag.import_errors,
        "heavy_modules": heavy,
        "dags": dags,
        "chunks": {
            "0": stats(0),
            "10": stats(10),
            "5000": stats(5000),
            "same_host": chunk_sources(same_host),
            "max_crawl_tasks": MAX_CRAWL_TASKS,
            "max_map_length": conf.getint("core", "max_map_length"),
        },
    }


if __name__ == "__main__":
    print(json.dumps(_report(), default=str))
