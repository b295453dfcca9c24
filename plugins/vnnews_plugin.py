"""Airflow plugin: the vnnews analyst pages in the Airflow UI (Browse → News stories).

The FastAPI app (``vnnews_analyst``) is mounted by the api-server at
``/vnnews`` and shown in the UI as an external view. Every page requires an
Airflow login (Airflow does not protect plugin apps by itself). The news
database is the Airflow connection ``vnnews_db``, else ``DATABASE_URL``, as
for the DAGs.

Airflow loads plugins in every task process too, so this module imports
nothing heavy: the app is built on its first request, in the api-server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from airflow.plugins_manager import AirflowPlugin

DB_CONN_ID = "vnnews_db"
URL_PREFIX = "/vnnews"

#: Connection extras passed on to libpq (TLS and timeouts); others are ignored.
LIBPQ_EXTRA = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "options"}
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def database_url() -> str:
    """The news database as the api-server sees it (connection first, then the environment)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection
    from psycopg.conninfo import make_conninfo

    from pipeline import db

    try:
        conn = Connection.get_connection_from_secrets(DB_CONN_ID)
    except AirflowNotFoundException:
        return db.database_url()
    return make_conninfo(
        host=conn.host,
        port=conn.port,
        user=conn.login,
        password=conn.password,
        dbname=conn.schema,
        **{k: v for k, v in conn.extra_dejson.items() if k in LIBPQ_EXTRA},
    )


def build_app() -> Any:
    """The analyst app behind Airflow's login (called on the first request)."""
    from fastapi import Depends
    from vnnews_analyst.app import create_app
    from vnnews_analyst.auth import require_airflow_login

    return create_app(database_url, dependencies=[Depends(require_airflow_login)])


class LazyApp:
    """An ASGI app that builds the real one (``factory()``) on its first request."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)


class VnnewsAnalystPlugin(AirflowPlugin):
    name = "vnnews_analyst"
    fastapi_apps = [
        {"app": LazyApp(build_app), "url_prefix": URL_PREFIX, "name": "vnnews analyst pages"}
    ]
    external_views = [
        {
            "name": "News stories",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative: resolved against Airflow's base URL
            "url_route": "vnnews",
            "destination": "nav",
            "category": "browse",
        }
    ]
