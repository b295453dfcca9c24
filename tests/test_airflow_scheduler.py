"""Event-driven runs under the real scheduler: one manual trigger of vnnews_crawl, and
vnnews_process then vnnews_cluster follow through their assets, with nobody
triggering them.

Airflow runs as in production, minus Celery: api-server (also the execution API
the task processes report to), scheduler with the LocalExecutor, dag-processor,
all subprocesses of this test with this venv's bin on PATH, a scratch Postgres
database as the metadata database. newsim serves the clustering fixture as five
publishers. The test stops everything when the cluster run ends (or after
``DEADLINE`` seconds) and checks the runs, the mapped processing tasks (two
workers, each article processed once), the news database and the analyst page
served by the api-server behind Airflow's login.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import FIXTURES
from psycopg import sql
from test_dags import DAG_IDS, airflow_env
from test_plugin import http_get

pytestmark = [pytest.mark.slow, pytest.mark.shared]

#: The whole chain takes about a minute on a quiet 2-core machine; a loaded one
#: (model loading, Airflow start-up) can take a few times that.
DEADLINE = 420
COMPONENTS = ("api-server", "scheduler", "dag-processor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def metadata_db(pg_admin_url: str) -> Iterator[str]:
    """A scratch database for Airflow's metadata, dropped afterwards (plain libpq URL)."""
    name = f"airflow_meta_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def sqlalchemy_url(conninfo: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    host = params.get("host", "127.0.0.1")
    return (
        f"postgresql+psycopg://{user}{password}@{host}:{params.get('port', 5432)}"
        f"/{params['dbname']}"
    )


class Airflow:
    """Airflow components started as subprocesses, each in its own process group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen] = {}

    def cli(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            ["airflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def start(self, component: str, *args: str) -> None:
        with (self.logs / f"{component}.log").open("w") as log:
            self.processes[component] = subprocess.Popen(
                ["airflow", component, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_running(self) -> None:
        for component, proc in self.processes.items():
            assert proc.poll() is None, f"{component} exited:\n{self.log_tail(component)}"

    def log_tail(self, component: str, chars: int = 3000) -> str:
        return (self.logs / f"{component}.log").read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM each component's process group, SIGKILL what is left after 30 s."""
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def dag_runs(metadata: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(metadata) as conn:
        return conn.execute("SELECT dag_id, run_type, state FROM dag_run ORDER BY id").fetchall()


def wait_for(condition, airflow: Airflow, what: str, until: float) -> None:
    while not condition():
        airflow.check_running()
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(2)


def test_crawl_triggers_process_then_cluster_through_assets(
    newsim, database_url, metadata_db, tmp_path
) -> None:
    site = newsim("--articles", str(FIXTURES / "cluster_articles.jsonl"), "--crawl-delay", "0")
    sources = site.sources_yaml(tmp_path / "sources.yaml")
    port = free_port()
    env = airflow_env(
        tmp_path / "airflow",
        # psycopg 3 for both engines (Airflow would derive asyncpg for the async one)
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlalchemy_url(metadata_db),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=sqlalchemy_url(metadata_db),
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(32),
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        DATABASE_URL=database_url,
        VNNEWS_CRAWL_SCHEDULE="none",
        VNNEWS_MAINTENANCE_SCHEDULE="none",
        VNNEWS_PROCESS_TASKS="2",
        VNNEWS_PROCESS_BATCH_SIZE="2",
    )
    (tmp_path / "airflow").mkdir()
    airflow = Airflow(env, tmp_path)
    airflow.cli("db", "migrate")
    until = time.monotonic() + DEADLINE
    try:
        airflow.start("api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1")
        airflow.start("dag-processor")
        airflow.start("scheduler")

        def registered() -> bool:
            with psycopg.connect(metadata_db) as conn:
                rows = conn.execute("SELECT dag_id FROM dag WHERE NOT is_paused").fetchall()
            return {r[0] for r in rows} >= DAG_IDS

        wait_for(registered, airflow, "the DAGs to be parsed", until)
        airflow.cli(
            "dags", "trigger", "vnnews_crawl", "--conf", json.dumps({"sources_file": str(sources)})
        )

        def cluster_done() -> bool:
            return any(
                dag == "vnnews_cluster" and state in ("success", "failed")
                for dag, _, state in dag_runs(metadata_db)
            )

        triggered = time.monotonic()
        wait_for(cluster_done, airflow, "the cluster run", until)
        print(f"trigger to finished cluster run: {time.monotonic() - triggered:.0f} s")
        page = analyst_page(port, env["AIRFLOW_HOME"])
    finally:
        airflow.stop()
        logs = {c: airflow.log_tail(c) for c in COMPONENTS}

    runs = dag_runs(metadata_db)
    assert runs == [
        ("vnnews_crawl", "manual", "success"),
        ("vnnews_process", "asset_triggered", "success"),
        ("vnnews_cluster", "asset_triggered", "success"),
    ], logs["scheduler"]

    with psycopg.connect(metadata_db) as conn:
        processed_by = conn.execute(
            "SELECT map_index, value FROM xcom"
            " WHERE dag_id = 'vnnews_process' AND task_id = 'process'"
            "   AND key = 'return_value' ORDER BY map_index"
        ).fetchall()
        events = conn.execute(
            "SELECT a.name FROM asset_event e JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        ).fetchall()
    with psycopg.connect(database_url) as conn:
        stages = dict(conn.execute("SELECT stage, count(*) FROM news.articles GROUP BY stage"))
        stories = conn.execute("SELECT count(*) FROM news.v_stories").fetchone()[0]

    articles = stages.get("clustered", 0)
    assert stages == {"clustered": articles} and articles >= 10
    assert 0 < stories < articles
    assert [r[0] for r in events] == [
        "vnnews_articles_extracted",
        "vnnews_articles_processed",
        "vnnews_stories_updated",
    ]
    # two mapped workers shared the backlog: together they processed each article once
    assert [i for i, _ in processed_by] == [0, 1]
    counts = [_json(value)["articles"] for _, value in processed_by]
    print("articles per mapped process task:", counts)
    assert sum(counts) == articles, counts

    # the analyst page, mounted by the api-server, needs an Airflow login
    assert page["anonymous"] == 401
    assert page["status"] == 200
    assert "Quảng Bình" in page["body"] and 'class="story"' in page["body"]


def analyst_page(port: int, home: str) -> dict:
    """GET the plugin page as an anonymous user, then with a token for the admin user
    that Airflow's simple auth manager created (its password is in AIRFLOW_HOME)."""
    base = f"http://127.0.0.1:{port}"
    day = "/vnnews/?day=2024-10-14"  # the fixture's flood day
    anonymous = http_get(base + day)[0]
    passwords = json.loads(
        Path(home, "simple_auth_manager_passwords.json.generated").read_text(encoding="utf-8")
    )
    login = urllib.request.Request(
        base + "/auth/token",
        data=json.dumps({"username": "admin", "password": passwords["admin"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=30) as response:
        token = json.load(response)["access_token"]
    status, _, body = http_get(base + day, {"Authorization": f"Bearer {token}"})
    return {"anonymous": anonymous, "status": status, "body": body}


def _json(value: object) -> dict:
    """An XCom value as stored by Airflow 3 (JSON; a string when the column is text)."""
    return json.loads(value) if isinstance(value, str) else value
