"""Clustering on the shared corpora: the seed pair, and a SIGKILL in the middle of a run.

VMDS (628 articles, 2012-2013, among them Israel, Syria and US-politics stories)
is ingested with its dates shifted so that its busiest weeks surround the seed
documents' (25-26/3/2024): every VMDS article from those weeks is a candidate
for the seeds' story, so "no VMDS article joins it" is tested, not given by the
calendar. Corpus and seeds are processed once per module into a template
database; each test clusters a copy. Skipped when ../shared is absent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from conftest import REPO
from psycopg import sql
from test_cluster import snapshot

from pipeline import cluster, db, ingest

pytestmark = [pytest.mark.slow, pytest.mark.shared]

SEED_RAW = "seeds/000_88dca81f111bb54c.txt"
SEED_SEGMENTED = "seeds/004_585a473785a8a0d5.txt"


def unsegment(text: str) -> str:
    """The seed format back to plain text: words un-joined, punctuation re-attached."""
    text = text.replace("_", " ")
    text = re.sub(r"\s+([,.;:!?%)\]”’])", r"\1", text)
    text = re.sub(r"([(\[“‘])\s+", r"\1", text)
    text = re.sub(r"(\d)\s*/\s*(\d)", r"\1/\2", text)
    return re.sub(r"(\w)\s+-\s+(\d)", r"\1-\2", text)


def first_sentence(text: str) -> str:
    """A neutral headline for a seed (they have none): its first sentence."""
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]


#: When the earlier seed document (004) was published; VMDS is shifted around it.
SEED_MOMENT = datetime.fromisoformat("2024-03-25T21:15:00+07:00")


def seed_records(shared: Path) -> list[dict]:
    raw = (shared / SEED_RAW).read_text(encoding="utf-8")
    plain = unsegment((shared / SEED_SEGMENTED).read_text(encoding="utf-8"))
    return [
        {
            "id": "seed-000",
            "url": "https://seed.example/000",
            "publisher": "outlet-a.example",
            "published_at": "2024-03-26T06:30:00+07:00",
            "title": first_sentence(raw),
            "body": raw,
        },
        {
            "id": "seed-004",
            "url": "https://seed.example/004",
            "publisher": "outlet-b.example",
            "published_at": SEED_MOMENT.isoformat(),
            "title": first_sentence(plain),
            "body": plain,
        },
    ]


def shifted_vmds(shared: Path, target: Path) -> Path:
    """VMDS with every date moved by one offset that puts its median date on the seeds'."""
    records = [
        json.loads(line)
        for line in (shared / "data/vmds/articles.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    moments = [datetime.fromisoformat(r["published_at"]) for r in records if r.get("published_at")]
    median = datetime.fromtimestamp(
        statistics.median(m.timestamp() for m in moments), tz=SEED_MOMENT.tzinfo
    )
    offset = SEED_MOMENT - median
    for record in records:
        if record.get("published_at"):
            moved = datetime.fromisoformat(record["published_at"]) + offset
            record["published_at"] = moved.isoformat()
    target.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return target


def _create(admin: str, name: str, template: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return psycopg.conninfo.make_conninfo(admin, dbname=name)


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def processed_corpus(pg_admin_url: str, template_db: str, shared_dir: Path, tmp_path_factory):
    """Name of a database holding VMDS + the seeds, processed, not yet clustered."""
    name = f"vnnews_corpus_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = _create(pg_admin_url, name, template_db)
    folder = tmp_path_factory.mktemp("corpus")
    vmds = shifted_vmds(shared_dir, folder / "vmds.jsonl")
    seeds = folder / "seeds.jsonl"
    seeds.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seed_records(shared_dir)),
        encoding="utf-8",
    )
    try:
        for path in (vmds, seeds):
            ingest.load_file(url, path, workers=2, cluster_after=False)
        yield name
    finally:
        _drop(pg_admin_url, name)


@pytest.fixture
def copy_of(pg_admin_url: str, processed_corpus: str) -> Iterator:
    made: list[str] = []

    def copy() -> str:
        name = f"vnnews_copy_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        made.append(name)
        return _create(pg_admin_url, name, processed_corpus)

    yield copy
    for name in made:
        _drop(pg_admin_url, name)


def test_the_seed_pair_is_one_story_and_no_vmds_article_joins_it(copy_of) -> None:
    url = copy_of()
    with db.connect(url) as conn:
        summary = cluster.cluster_pending(conn)
        near_seeds = conn.execute(
            "SELECT count(*) FROM news.articles WHERE external_id NOT LIKE 'seed-%%'"
            " AND published_at BETWEEN %s AND %s",
            (SEED_MOMENT - cluster.WINDOW, SEED_MOMENT + cluster.WINDOW),
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT a.external_id, sa.story_id FROM news.story_articles AS sa"
            " JOIN news.articles AS a ON a.id = sa.article_id"
            " WHERE sa.story_id IN (SELECT story_id FROM news.story_articles AS s"
            "   JOIN news.articles AS x ON x.id = s.article_id WHERE x.external_id LIKE 'seed-%%')"
        ).fetchall()
    assert summary.articles == 630
    assert near_seeds >= 100  # the shift put many VMDS articles inside the seeds' window
    assert sorted(external for external, _ in rows) == ["seed-000", "seed-004"]
    assert len({story for _, story in rows}) == 1


def _vnnews_cluster(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "cluster"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _clustered(url: str) -> int:
    with db.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM news.story_articles").fetchone()[0]


def test_sigkill_mid_run_then_rerun_gives_the_same_stories(copy_of) -> None:
    uninterrupted, interrupted = copy_of(), copy_of()
    with db.connect(uninterrupted) as conn:
        cluster.cluster_pending(conn)
        expected = snapshot(conn)

    run = _vnnews_cluster(interrupted)
    deadline = time.monotonic() + 300
    while _clustered(interrupted) < 200 and time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    done_at_kill = _clustered(interrupted)
    assert 200 <= done_at_kill < 630, "the run must be killed mid-way"

    rerun = _vnnews_cluster(interrupted)
    _, errors = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, errors
    with db.connect(interrupted) as conn:
        got = snapshot(conn)
        stages = conn.execute("SELECT DISTINCT stage FROM news.articles").fetchall()
    assert stages == [("clustered",)]
    assert got["assignments"] == expected["assignments"]
    assert got["stories"] == expected["stories"]
    assert got == expected
