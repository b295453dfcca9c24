"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the file parses
(anchors and merge keys included), the services are all there and wired consistently
(images and builds, dependencies and health checks, volumes, environment, ports), the
image installs the pinned environment, and no secret is written in the repository."""

from __future__ import annotations

import re
import shlex
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CONSTRAINTS = REPO / "constraints.txt"
DOC = REPO / "docs" / "airflow.md"

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery",
}
BACKING_SERVICES = {"airflow-db", "news-db", "redis"}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def host_of(url: str) -> str:
    """The host of a URL whose password may be a ${...} interpolation."""
    return urlsplit(INTERPOLATION.sub("x", url)).hostname or ""


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_every_component_is_a_service(services: dict) -> None:
    assert set(AIRFLOW_SERVICES) | BACKING_SERVICES | {"airflow-init"} == set(services)
    for name, component in AIRFLOW_SERVICES.items():
        assert services[name]["command"][0] == component, name


def test_airflow_services_share_one_image_built_here(services: dict) -> None:
    airflow = [s for name, s in services.items() if name.startswith("airflow-") and "build" in s]
    assert len(airflow) == len(AIRFLOW_SERVICES) + 1  # and airflow-init
    assert {s["build"] for s in airflow} == {"."}
    assert len({s["image"] for s in airflow}) == 1
    for name in BACKING_SERVICES:
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), name  # pinned major versions


def test_metadata_and_news_databases_are_separate_servers(services: dict) -> None:
    env = services["airflow-scheduler"]["environment"]
    metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    news = env["AIRFLOW_CONN_VNNEWS_DB"]
    assert host_of(metadata) == "airflow-db" and host_of(news) == "news-db"
    # psycopg 3 is the driver installed (constraints.txt); Airflow would default the
    # async engine to asyncpg, which is not
    assert metadata.startswith("postgresql+psycopg://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == metadata
    pins = CONSTRAINTS.read_text(encoding="utf-8").lower()
    assert "psycopg==" in pins and "asyncpg" not in pins
    assert services["airflow-init"]["environment"]["DATABASE_URL"] == news


def test_celery_executor_wiring(services: dict) -> None:
    env = services["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert host_of(env["AIRFLOW__CELERY__BROKER_URL"]) == "redis"
    assert host_of(env["AIRFLOW__CELERY__RESULT_BACKEND"]) == "airflow-db"
    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    command = services["airflow-apiserver"]["command"]
    assert api.hostname == "airflow-apiserver"
    assert str(api.port) == command[command.index("--port") + 1]
    assert api.path == "/execution/"


def test_dependencies_and_health_checks_are_consistent(services: dict) -> None:
    for name, service in services.items():
        if name != "airflow-init":
            check = service.get("healthcheck", {}).get("test")
            assert check and check[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, (name, target)
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
            else:
                assert (target, condition) == ("airflow-init", "service_completed_successfully")
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == (
            "service_completed_successfully"
        )
    # the api-server's health check asks the port it listens on
    command = services["airflow-apiserver"]["command"]
    port = command[command.index("--port") + 1]
    assert f"localhost:{port}/api/v2/monitor/health" in " ".join(
        services["airflow-apiserver"]["healthcheck"]["test"]
    )


def test_volumes_are_declared_and_used(compose: dict, services: dict) -> None:
    used = {
        mount.split(":", 1)[0]
        for service in services.values()
        for mount in service.get("volumes", [])
        if not mount.startswith((".", "/"))
    }
    assert used == set(compose["volumes"])
    for name in ("airflow-db", "news-db"):
        assert any(m.endswith(":/var/lib/postgresql/data") for m in services[name]["volumes"])
    for name in AIRFLOW_SERVICES:  # task logs written by workers, read by the api-server
        assert "airflow-logs:/opt/airflow/logs" in services[name]["volumes"], name


def test_workers_can_be_scaled(services: dict) -> None:
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert "WORKER_CONCURRENCY" in worker["environment"]["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
    assert "docker compose up -d --scale airflow-worker=" in DOC.read_text(encoding="utf-8")


def test_no_secret_is_written_in_the_file(services: dict) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    required = set()
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            named = any(w in key for w in ("PASSWORD", "SECRET", "FERNET", "_CONN"))
            url_with_login = "://" in str(value) and "@" in str(value)
            if (named and not key.endswith("_FILE")) or url_with_login:  # _FILE: a path
                names = INTERPOLATION.findall(str(value))
                assert names, f"{key} is written in the file"
                required.update(n for n in names if f"${{{n}:?" in text)
    assert required == {
        "AIRFLOW_DB_PASSWORD",
        "NEWS_DB_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_FERNET_KEY",
    }
    doc = DOC.read_text(encoding="utf-8")
    assert all(name in doc for name in required)  # the doc says how to set each one


def test_dockerfile_installs_the_pinned_environment() -> None:
    instructions = dockerfile_instructions()
    runs = [args for op, args in instructions if op == "RUN"]
    install = next(r for r in runs if "-c constraints.txt" in r)
    words = shlex.split(install.split("&&")[-1])
    assert words[:2] == ["pip", "install"] and ".[airflow" in " ".join(words)
    pins = dict(
        line.lower().split("==", 1)
        for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if "==" in line
    )
    for word in words:  # anything named beside the project is pinned, as constraints.txt has it
        if re.match(r"^[A-Za-z][\w.-]*==", word):
            name, version = word.lower().split("==")
            assert pins.get(name, version) == version, word
    assert instructions[0][0] == "FROM" and "python:3.11" in instructions[0][1]


def test_dockerfile_copies_what_the_image_needs() -> None:
    instructions = dockerfile_instructions()
    copied = [args.split()[0] for op, args in instructions if op == "COPY"]
    sources = {w for op, args in instructions if op == "COPY" for w in args.split()[:-1]}
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for source in sources:
        assert (REPO / source).exists(), source
        assert source.split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"
    assert {"pipeline", "sql", "dags", "plugins"} <= set(copied)
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/vnnews/dags" in env
    assert "AIRFLOW__CORE__PLUGINS_FOLDER=/opt/vnnews/plugins" in env
    workdir = next(args for op, args in instructions if op == "WORKDIR")
    assert workdir == "/opt/vnnews"
    user = [args for op, args in instructions if op == "USER"]
    assert user and user[-1] != "root" and user[-1] != "0"
