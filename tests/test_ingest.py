"""JSONL ingest: what is stored, what is refused (with line numbers), and idempotence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

from pipeline import ingest

ARTICLES = FIXTURES / "cluster_articles.jsonl"


def _write(path: Path, lines: list[str | dict]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False))
            out.write("\n")
    return path


GOOD = {
    "id": "g1",
    "url": "https://tin.example/bai-1",
    "title": "Tiêu đề",
    "body": "Nội dung bài báo.",
    "published_at": "2024-10-14T07:10:00+07:00",
    "publisher": "tin.example",
    "cluster_id": "gold-label-never-read",
    "category": "ignored",
}


def test_ingest_stores_articles_and_is_idempotent(conn) -> None:
    first = ingest.ingest_jsonl(conn, ARTICLES)
    assert (first.lines, first.inserted, first.errors) == (13, 13, 0)
    again = ingest.ingest_jsonl(conn, ARTICLES)
    assert (again.inserted, again.already_present) == (0, 13)
    assert conn.execute("SELECT count(*) FROM news.articles").fetchone()[0] == 13
    stages = conn.execute("SELECT DISTINCT stage FROM news.articles").fetchall()
    assert stages == [("extracted",)]


def test_null_url_gets_a_stable_synthetic_one(conn) -> None:
    ingest.ingest_jsonl(conn, ARTICLES)
    row = conn.execute(
        "SELECT url, published_at FROM news.articles WHERE external_id = 'f10'"
    ).fetchone()
    assert row == ("urn:vnnews:tin-e.example:f10", None)


def test_http_urls_are_canonicalised_like_crawled_ones(conn, tmp_path) -> None:
    messy = {**GOOD, "url": "HTTPS://Tin.Example/bai-1?utm_source=fb#top"}
    ingest.ingest_jsonl(conn, _write(tmp_path / "one.jsonl", [messy]))
    assert conn.execute("SELECT url FROM news.articles").fetchone()[0] == (
        "https://tin.example/bai-1"
    )
    again = ingest.ingest_jsonl(conn, _write(tmp_path / "two.jsonl", [GOOD]))
    assert again.already_present == 1


def test_text_is_stored_nfc(conn, tmp_path) -> None:
    decomposed = unicodedata.normalize("NFD", "Hà Nội mưa lớn")
    path = _write(tmp_path / "nfd.jsonl", [{**GOOD, "title": decomposed, "body": decomposed}])
    ingest.ingest_jsonl(conn, path)
    title, body = conn.execute("SELECT title, body FROM news.articles").fetchone()
    assert title == body == unicodedata.normalize("NFC", decomposed)
    assert title != decomposed


def test_bad_lines_are_reported_with_their_number_and_skipped(conn, tmp_path) -> None:
    path = _write(
        tmp_path / "mixed.jsonl",
        [
            GOOD,
            "{not json",
            "[1, 2]",
            {**GOOD, "url": "https://tin.example/2", "title": None},
            "",
            {**GOOD, "url": "https://tin.example/3", "published_at": "hôm qua"},
            {**GOOD, "url": "https://tin.example/4", "published_at": "2024-10-14T07:10:00"},
            {**GOOD, "url": None, "id": None},
            {**GOOD, "url": "https://tin.example/5", "body": ["a"]},
            {**GOOD, "url": "https://tin.example/6", "publisher": ""},
            {**GOOD, "url": "https://tin.example/7", "body": "", "published_at": None},
        ],
    )
    path.write_bytes(path.read_bytes() + b'{"title": "\xff"}\n')
    summary = ingest.ingest_jsonl(conn, path)
    assert summary.inserted == 2  # the good line and the undated, empty-body one
    assert summary.errors == 9
    assert summary.lines == 11  # the blank line is not a record
    reasons = {error.line: error.reason for error in summary.error_lines}
    assert sorted(reasons) == [2, 3, 4, 6, 7, 8, 9, 10, 12]
    assert "not valid JSON" in reasons[2]
    assert "expected a JSON object" in reasons[3]
    assert "missing 'title'" in reasons[4]
    assert "not ISO 8601" in reasons[6]
    assert "no UTC offset" in reasons[7]
    assert "no 'url' and no 'id'" in reasons[8]
    assert "'body' must be a string" in reasons[9]
    assert "empty 'publisher'" in reasons[10]
    assert "not UTF-8" in reasons[12]


def test_gold_labels_are_not_stored(conn, tmp_path) -> None:
    ingest.ingest_jsonl(conn, _write(tmp_path / "one.jsonl", [GOOD]))
    row = conn.execute("SELECT to_jsonb(a)::text FROM news.articles AS a").fetchone()[0]
    assert "gold-label-never-read" not in row
    assert "ignored" not in row


@pytest.mark.slow
def test_cli_ingest_runs_processing_and_clustering(database_url, tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    bad = _write(tmp_path / "extra.jsonl", ["{oops", GOOD])
    for path in (ARTICLES, bad):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "ingest", str(path), "--workers", "1"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    assert f"{bad}:1: skipped: not valid JSON" in result.stderr
    assert "1 bad line(s) skipped" in result.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "pipeline", "stories", "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    stories = json.loads(listing.stdout)
    assert sum(len(story["articles"]) for story in stories) == 14
    assert set(stories[0]) == {
        "story_id",
        "label",
        "first_published_at",
        "last_published_at",
        "articles",
    }
    assert set(stories[0]["articles"][0]) == {"url", "title", "publisher", "published_at"}
    flood = next(s for s in stories if any("Quảng Bình" in a["title"] for a in s["articles"]))
    assert len(flood["articles"]) == 5


def test_urls_too_long_to_index_are_reported_and_skipped(conn, tmp_path) -> None:
    escaped_too_long = "https://tin.example/" + "đ" * 800  # 1,620 bytes, 4,820 once escaped
    path = _write(
        tmp_path / "long.jsonl",
        [
            {**GOOD, "url": "https://tin.example/" + "x" * 3000},
            {**GOOD, "url": escaped_too_long},
            GOOD,
        ],
    )
    summary = ingest.ingest_jsonl(conn, path)
    reasons = {error.line: error.reason for error in summary.error_lines}
    assert summary.inserted == 1 and sorted(reasons) == [1, 2]
    assert "3020 bytes long" in reasons[1]
    assert "characters (max 2048)" in reasons[2]
