"""Every SQL block in docs/analyst-queries.md runs and returns rows on a populated database.

The database holds the fixture articles (tests/fixtures/cluster_articles.jsonl)
moved to the last hours, so "today" queries see them, processed by the real
NLP stage and clustered; two flood reports are first kept apart so that the
third merges their stories and the merge queries have something to show.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

from pipeline import cluster, db, ingest

DOC = REPO / "docs/analyst-queries.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.DOTALL | re.MULTILINE)


def queries() -> list[str]:
    return SQL_BLOCK.findall(DOC.read_text(encoding="utf-8"))


def recent_copy(path: Path, target: Path) -> Path:
    """The fixture with its dates shifted so the newest article is 30 minutes old."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    dated = [datetime.fromisoformat(r["published_at"]) for r in records if r["published_at"]]
    shift = datetime.now(UTC) - timedelta(minutes=30) - max(dated)
    with target.open("w", encoding="utf-8") as out:
        for record in records:
            if record["published_at"]:
                moved = datetime.fromisoformat(record["published_at"]) + shift
                record["published_at"] = moved.isoformat()
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return target


@pytest.fixture
def populated(database_url: str, tmp_path: Path) -> str:
    path = recent_copy(FIXTURES / "cluster_articles.jsonl", tmp_path / "recent.jsonl")
    ingest.load_file(database_url, path, workers=1, cluster_after=False)
    with db.connect(database_url) as conn:
        defaults = cluster.ClusterSettings()
        apart = replace(defaults, join_threshold=2.0)  # nothing joins: f1 and f2 stay apart
        cluster.cluster_pending(conn, settings=apart, limit=2)
        summary = cluster.cluster_pending(conn, settings=replace(defaults, merge_threshold=0.3))
    assert summary.merges >= 1
    return database_url


def test_the_doc_has_a_dozen_queries() -> None:
    assert len(queries()) >= 12


def test_every_query_returns_rows(populated: str) -> None:
    empty = []
    with db.connect(populated) as conn:
        for number, query in enumerate(queries(), start=1):
            rows = conn.execute(query).fetchall()
            if not rows:
                empty.append(f"query {number}: {query.splitlines()[0]}")
    assert not empty, "queries returning no rows:\n" + "\n".join(empty)
