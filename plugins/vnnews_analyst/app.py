"""The analyst pages as a FastAPI app: a day's stories, a story's timeline, source health.

Server-rendered HTML (Jinja2 templates next to this file, autoescaped) with
links relative to the page, so the app works under any prefix: Airflow mounts
it at ``/vnnews`` and shows it in an iframe; tests serve it on its own.
Handlers are plain functions (FastAPI runs them in its thread pool) that open
one short autocommit connection per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline import db, maintenance
from vnnews_analyst import queries

log = logging.getLogger(__name__)

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))


def _vietnam_time(value: datetime | None, fmt: str = "%H:%M %d/%m/%Y") -> str:
    return value.astimezone(queries.VIETNAM).strftime(fmt) if value else "–"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


TEMPLATES.env.filters["vn_time"] = _vietnam_time
TEMPLATES.env.filters["share"] = _share


def connection(request: Request) -> Iterator[psycopg.Connection]:
    """One autocommit connection for this request (503 when the database is unreachable)."""
    with ExitStack() as stack:
        try:
            url = request.app.state.database_url()
            conn = stack.enter_context(db.connect(url, autocommit=True))
        except db.DatabaseError as exc:
            log.warning("analyst page: %s", exc)
            raise HTTPException(503, "The news database cannot be reached.") from exc
        yield conn


Conn = Annotated[psycopg.Connection, Depends(connection)]


def create_app(database_url: Callable[[], str], *, dependencies: Sequence[Any] = ()) -> FastAPI:
    """The app; ``database_url`` is called per request, ``dependencies`` guard every page."""
    app = FastAPI(
        title="vnnews analyst",
        dependencies=list(dependencies),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.database_url = database_url

    @app.exception_handler(psycopg.errors.UndefinedTable)
    def no_schema(request: Request, exc: Exception) -> HTMLResponse:
        message = "The news database has no vnnews schema yet: run `vnnews db upgrade` or a DAG."
        return _error(request, 503, message)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.get("/", response_class=HTMLResponse)
    def stories_page(request: Request, conn: Conn, day: date | None = None) -> HTMLResponse:
        """The stories with articles published on ``day`` (Vietnam time; today by default)."""
        shown = day or queries.today()
        stories = queries.stories_of_day(conn, shown)
        return _page(
            request,
            "stories.html",
            root="./",
            day=shown,
            previous_day=shown - timedelta(days=1),
            next_day=shown + timedelta(days=1),
            is_today=shown == queries.today(),
            stories=stories,
            articles=sum(s.day_articles for s in stories),
        )

    @app.get("/story/{story_id}", response_class=HTMLResponse, response_model=None)
    def story_page(request: Request, conn: Conn, story_id: int) -> HTMLResponse | RedirectResponse:
        """One story: its articles in time order and its day-by-day timeline."""
        live = queries.resolve_story(conn, story_id)
        if live is None:
            raise HTTPException(404, f"There is no story {story_id}.")
        if live != story_id:  # merged into another story since the link was made
            return RedirectResponse(str(live), status_code=303)
        found = queries.story(conn, live)
        if found is None:
            raise HTTPException(404, f"There is no story {story_id}.")
        story, timeline = found
        busiest = max((d.articles for d in timeline), default=1)
        return _page(
            request, "story.html", root="../", story=story, timeline=timeline, busiest=busiest
        )

    @app.get("/sources", response_class=HTMLResponse)
    def sources_page(request: Request, conn: Conn) -> HTMLResponse:
        """Per-source health: polling, arrivals, failures, usable dates and bodies."""
        rows = maintenance.source_health(conn)
        problems = {row.source_id: maintenance.unhealthy(row) for row in rows}
        return _page(request, "sources.html", root="./", rows=rows, problems=problems)

    return app


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, context)


def _error(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message},
        status_code=status,
        headers=headers,
    )
