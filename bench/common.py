"""What the benchmarks (and the end-to-end tests) share: ../shared, scratch
databases and a running newsim.

Benchmarks run as scripts (``python bench/x.py``) and import this as ``common``;
tests import it as ``bench.common`` (pytest puts the repo root on sys.path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VNNEWS_SHARED", REPO.parent / "shared"))
NEWSIM = SHARED / "newsim" / "newsim.py"

#: A server where benchmarks may create databases: DATABASE_URL's, else the local one.
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def require_shared() -> None:
    """Exit cleanly (status 0, with a message) when ../shared is absent."""
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent (set VNNEWS_SHARED)")
        sys.exit(0)


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER


@contextmanager
def scratch_database(prefix: str = "vnnews_bench", *, keep: bool = False) -> Iterator[str]:
    """A new empty database on :func:`server_url`'s server, dropped afterwards."""
    admin = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(admin, dbname=name)
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(drop)


@dataclass
class Newsim:
    """A running newsim server (started with --truth)."""

    base_url: str
    process: subprocess.Popen
    #: appended to publisher names in sources files, so several servers' names differ
    name_suffix: str = ""

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.base_url + path, timeout=60) as response:
            return json.load(response)

    def truth(self) -> dict:
        return self.get_json("/_truth")

    def log(self, since: int = 0) -> list[dict]:
        return self.get_json(f"/_log?since={since}")["requests"]

    def sources_yaml(self, path: Path, *, min_host_interval: float = 0.0) -> Path:
        """A sources file listing every simulated publisher, with 127.0.0.1 allowed."""
        return write_sources(path, [self], min_host_interval=min_host_interval)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def write_sources(path: Path, sites: list[Newsim], *, min_host_interval: float = 0.0) -> Path:
    """One sources file for the publishers of several newsim servers."""
    lines = [
        "settings:",
        "  allow_hosts: [127.0.0.1]",
        f"  min_host_interval: {min_host_interval}",
        "sources:",
    ]
    for site in sites:
        for publisher in site.truth()["publishers"]:
            lines += [
                f"  - name: {json.dumps(publisher['display_name'] + site.name_suffix)}",
                f"    homepage: {publisher['home']}",
                "    feeds:",
                *[f"      - {feed}" for feed in publisher["feeds"]],
            ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_newsim(*args: str) -> Newsim:
    """Start newsim on a free port with ``--truth`` plus ``args``; call ``stop()`` after."""
    process = subprocess.Popen(
        [sys.executable, str(NEWSIM), "--port", "0", "--truth", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"newsim did not start: {line!r}")
    return Newsim(line.split("listening on", 1)[1].strip().rstrip("/"), process)


@contextmanager
def newsim(*args: str) -> Iterator[Newsim]:
    server = start_newsim(*args)
    try:
        yield server
    finally:
        server.stop()
