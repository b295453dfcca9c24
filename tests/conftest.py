"""Shared fixtures: a real Postgres for every test that needs one.

``VNNEWS_TEST_ADMIN_URL`` names a server where tests may create databases
(default: the local server on 127.0.0.1:5432). If that server cannot be
reached, an embedded Postgres is started in a temporary folder, so the tests
run anywhere. Each test gets its own database cloned from a migrated template,
which takes a fraction of a second and keeps tests independent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bench.common import SHARED, Newsim, start_newsim
from pipeline import db

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A server URL whose role may CREATE DATABASE."""
    url = os.environ.get("VNNEWS_TEST_ADMIN_URL", DEFAULT_ADMIN_URL)
    if _reachable(url):
        yield url
        return
    home = Path(tempfile.mkdtemp(prefix="vnnews-test-pg-"))
    try:
        yield db.embedded_database_url(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that per-test databases are cloned from."""
    name = f"vnnews_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with db.connect(_with_dbname(pg_admin_url, name)) as conn:
            db.upgrade(conn)
        yield name
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def database_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test only (dropped afterwards)."""
    name = f"vnnews_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield _with_dbname(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection to this test's fresh database."""
    with db.connect(database_url) as connection:
        yield connection


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (read-only material); tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent")
    return SHARED


@pytest.fixture
def newsim(shared_dir: Path) -> Iterator[Callable[..., Newsim]]:
    """Start newsim with the given command-line arguments (``--truth`` and port 0 added)."""
    running: list[Newsim] = []

    def start(*args: str) -> Newsim:
        running.append(start_newsim(*args))
        return running[-1]

    yield start
    for server in running:
        server.stop()
