"""The analyst pages: the real FastAPI app served by uvicorn on 127.0.0.1 over a database
populated by the real pipeline (ingest → NLP → clustering), read over HTTP and, when
Chromium is installed, rendered by a headless browser (screenshot kept in artifacts/).
Airflow's plugin manager is checked to load the plugin with its app and external view.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from datetime import time as day_time
from pathlib import Path

import psycopg
import pytest
from conftest import FIXTURES, REPO
from test_dags import PLUGINS, airflow_env, run_script

from pipeline import db, ingest, store
from pipeline.sources import Source

ARTIFACTS = REPO / "artifacts"
SCREENSHOT = ARTIFACTS / "plugin_stories.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def today_copy(path: Path, target: Path) -> Path:
    """The fixture moved in time so its first article is at 00:30 today, Vietnam time
    (its 26 hours then start today whatever the hour the test runs)."""
    from vnnews_analyst.queries import VIETNAM

    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    dated = [r for r in records if r["published_at"]]
    times = [datetime.fromisoformat(r["published_at"]) for r in dated]
    shift = datetime.combine(datetime.now(VIETNAM).date(), day_time(0, 30), VIETNAM) - min(times)
    for record, published in zip(dated, times, strict=True):
        record["published_at"] = (published + shift).isoformat()
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    target.write_text("".join(lines), encoding="utf-8")
    return target


@pytest.fixture
def analyst_app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    from vnnews_analyst import app

    return app


@pytest.fixture
def populated(analyst_app, database_url: str, tmp_path: Path) -> str:
    """Today's stories from the clustering fixture, and sources with some health history."""
    path = today_copy(FIXTURES / "cluster_articles.jsonl", tmp_path / "today.jsonl")
    ingest.load_file(database_url, path, workers=1)
    with db.connect(database_url) as conn:
        publishers = [r[0] for r in conn.execute("SELECT DISTINCT publisher FROM news.articles")]
        feeds = store.sync_sources(
            conn,
            [
                Source(name=p, homepage=f"https://{p}/", feeds=(f"https://{p}/rss",))
                for p in sorted(publishers)
            ],
        )
        conn.execute(
            "UPDATE news.articles AS a SET source_id = s.id"
            " FROM news.sources AS s WHERE s.name = a.publisher"
        )
        for feed in feeds:
            if feed.source_name == "bao-d.example":
                store.record_feed_failure(conn, feed.id, status=503, error="http_5xx")
            else:
                store.record_feed_success(
                    conn, feed.id, status=200, etag=None, last_modified=None, items=3
                )
    return database_url


class Server:
    """uvicorn serving an app on a free port of 127.0.0.1, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def get(self, path: str) -> tuple[int, str, str]:
        return http_get(self.base_url + path)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, final URL, body) of a GET, following redirects; errors are answers too."""
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.url, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.url, error.read().decode("utf-8")


@pytest.fixture
def server(analyst_app, populated: str) -> Iterator[Server]:
    with Server(analyst_app.create_app(lambda: populated)) as running:
        yield running


def story_ids(conn: psycopg.Connection) -> dict[str, int]:
    """Story id by the titles of its articles."""
    rows = conn.execute("SELECT title, story_id FROM news.v_story_articles").fetchall()
    return dict(rows)


def test_today_page_lists_todays_stories_with_articles_and_outlets(server, populated) -> None:
    status, _, page = server.get("/")

    assert status == 200
    assert "Today&#39;s stories" in page or "Today's stories" in page
    with psycopg.connect(populated) as conn:
        stories = conn.execute(
            "SELECT DISTINCT story_id, story_label FROM news.v_story_articles"
            " WHERE (published_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date"
            "     = (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date"
        ).fetchall()
        titles = [
            r[0]
            for r in conn.execute(
                "SELECT title FROM news.articles WHERE (published_at AT TIME ZONE"
                " 'Asia/Ho_Chi_Minh')::date = (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date"
            )
        ]
    assert len(stories) >= 3
    assert page.count('<section class="story">') == len(stories)
    for story_id, label in stories:
        assert f'href="./story/{story_id}"' in page
        assert escape(label) in page
    for title in titles:
        assert escape(title) in page
    # the flood story lists its outlets
    flood = re.search(
        r"<section class=\"story\">(?:(?!</section>).)*Quảng Bình.*?</section>", page, re.DOTALL
    ).group(0)
    outlets = re.search(r"Outlets: ([^<]*)</div>", flood).group(1).split(", ")
    assert {"tin-a.example", "bao-b.example", "tin-c.example", "bao-d.example"} <= set(outlets)


def test_story_page_has_timeline_and_merged_ids_redirect(server, populated) -> None:
    with psycopg.connect(populated) as conn:
        ids = story_ids(conn)
        flood = ids["Lũ lớn ở Quảng Bình, hàng nghìn nhà dân bị ngập sâu"]
        days = conn.execute(
            "SELECT count(*) FROM news.v_story_timeline WHERE story_id = %s", (flood,)
        ).fetchone()[0]
        # an analyst's old link: merge the story into another one by hand
        other = ids["Giá cà phê Tây Nguyên tăng lên mức kỷ lục"]
        conn.execute("UPDATE news.stories SET merged_into = %s WHERE id = %s", (flood, other))

    status, _, page = server.get(f"/story/{flood}")
    assert status == 200
    assert page.count('class="bar"') == days >= 1
    assert "Quảng Bình" in page and 'href="../sources"' in page

    status, url, _ = server.get(f"/story/{other}")
    assert status == 200 and url.endswith(f"/story/{flood}")
    assert server.get("/story/999999")[0] == 404


def test_sources_page_shows_health(server) -> None:
    status, _, page = server.get("/sources")

    assert status == 200
    rows = re.findall(r"<tr class=\"(flagged)?\">", page)
    assert len(rows) == 5  # one per source
    assert "1/1 feeds failing" in page  # bao-d.example's feed
    assert "every feed failing" in page
    assert page.count(">100%<") >= 4  # dated and body shares of the sources with articles


def test_unreachable_database_is_a_503_page(analyst_app) -> None:
    app = analyst_app.create_app(lambda: "postgresql://nobody@127.0.0.1:1/none")
    with Server(app) as running:
        status, _, page = running.get("/")
    assert status == 503 and "cannot be reached" in page


def test_chromium_renders_the_page(server) -> None:
    """A real browser loads today's page; the screenshot is kept as a test artifact."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    profile = ARTIFACTS / ".chromium-profile"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1400"]
    try:
        dom = subprocess.run(
            [chromium, *flags, "--dump-dom", server.base_url + "/"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        subprocess.run(
            [chromium, *flags, f"--screenshot={SCREENSHOT}", server.base_url + "/"],
            capture_output=True,
            timeout=120,
            check=True,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert dom.count('<section class="story">') >= 3  # what the browser built from the HTML
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 20_000  # a rendered page, not a blank one


def test_airflow_loads_the_plugin(tmp_path: Path) -> None:
    plugin = run_script(PLUGIN_REPORT, airflow_env(tmp_path))

    assert plugin["import_errors"] == {}
    assert plugin["fastapi_apps"] == [{"url_prefix": "/vnnews", "name": "vnnews analyst pages"}]
    assert plugin["external_views"][0]["href"] == "vnnews/"
    assert plugin["external_views"][0]["url_route"] == "vnnews"
    assert not plugin["heavy_modules"]  # loading the plugin (in every task) stays cheap


def escape(text: str) -> str:
    """As Jinja2's autoescape writes text into HTML."""
    from markupsafe import escape as markup_escape

    return str(markup_escape(text))


#: Run in a fresh interpreter: what Airflow's plugin manager makes of plugins/, and what
#: loading the plugins the way every task process does imports.
PLUGIN_REPORT = """
import json, sys
from airflow import plugins_manager
from airflow.sdk.plugins_manager import integrate_macros_plugins

integrate_macros_plugins()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("pipeline", "psycopg", "fastapi"))
ours = next(p for p in plugins_manager.get_plugin_info() if p["name"] == "vnnews_analyst")
print(json.dumps({
    "import_errors": plugins_manager.get_import_errors(),
    "heavy_modules": heavy,
    "fastapi_apps": [{"url_prefix": a["url_prefix"], "name": a["name"]}
                     for a in ours["fastapi_apps"]],
    "external_views": ours["external_views"],
}, default=str))
"""
