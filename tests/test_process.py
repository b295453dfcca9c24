"""The processing stage over a real Postgres: stage transitions, idempotence, entity identity,
concurrent workers, and recovery after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import FIXTURES, REPO

from pipeline import db, process

LINES = (FIXTURES / "nlp_news.txt").read_text(encoding="utf-8").splitlines()
VNNEWS = Path(sys.executable).with_name("vnnews")

INSERT_ARTICLE = """
INSERT INTO news.articles (url, publisher, title, lead, body, published_at)
VALUES (%s, 'fixture', %s, %s, %s, '2024-11-12T08:00:00+07:00')
RETURNING id
"""


def article(i: int, size: int = 4) -> tuple[str, str, str | None, str]:
    """A small article built from the fixture lines (rotating, so articles differ)."""
    picked = [LINES[(i + k) % len(LINES)] for k in range(size + 1)]
    lead = picked[1] if i % 3 else None
    body = "\n".join(picked[2:] if lead else picked[1:])
    return f"https://example.test/{i}", picked[0], lead, body


def add_articles(conn: psycopg.Connection, count: int, size: int = 4) -> list[int]:
    ids = [conn.execute(INSERT_ARTICLE, article(i, size)).fetchone()[0] for i in range(count)]
    conn.commit()
    return ids


def stages(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT stage, count(*) FROM news.articles GROUP BY stage").fetchall())


def assert_consistent(conn: psycopg.Connection) -> None:
    """Processed articles have their analysis; counts match mentions; offsets fit the text."""
    missing = conn.execute(
        "SELECT count(*) FROM news.articles a LEFT JOIN news.article_nlp n ON n.article_id = a.id"
        " WHERE (a.stage = 'processed') <> (n.article_id IS NOT NULL)"
    ).fetchone()[0]
    assert missing == 0
    counted, mentions = conn.execute(
        "SELECT (SELECT coalesce(sum(mention_count), 0) FROM news.entities),"
        " (SELECT count(*) FROM news.entity_mentions)"
    ).fetchone()
    assert counted == mentions
    rows = conn.execute(
        "SELECT m.field, m.start_offset, m.end_offset, m.surface, a.title, a.lead, a.body"
        " FROM news.entity_mentions m JOIN news.articles a ON a.id = m.article_id"
    ).fetchall()
    for field, start, end, surface, title, lead, body in rows:
        text = {"title": title, "lead": lead, "body": body}[field]
        assert text[start:end] == surface


def test_process_stores_analysis_and_advances_stage(database_url: str, conn) -> None:
    ids = add_articles(conn, 5)
    summary = process.process_pending(database_url, workers=1, batch_size=2)
    assert (summary.articles, summary.batches) == (5, 3)
    assert summary.mentions > 0
    assert stages(conn) == {"processed": 5}
    assert_consistent(conn)

    rows = conn.execute(
        "SELECT a.title, a.lead, a.body, n.segmented_title, n.segmented_lead, n.segmented,"
        " n.sentences, n.tokens, n.nlp_version"
        " FROM news.article_nlp n JOIN news.articles a ON a.id = n.article_id ORDER BY a.id"
    ).fetchall()
    assert len(rows) == len(ids)
    for title, lead, body, seg_title, seg_lead, segmented, sentences, tokens, version in rows:
        assert version == process.nlp.NLP_VERSION
        assert (seg_lead is None) == (lead is None) == ("lead" not in tokens)
        assert len(segmented.split("\n")) == len(sentences["body"]) == len(body.split("\n"))
        assert "_" in seg_title or "_" in segmented
        for field, text in (("title", title), ("lead", lead), ("body", body)):
            for start, end, pos in tokens.get(field, []):
                word = text[start:end]
                assert word and word == word.strip() and pos


def test_second_run_processes_nothing(database_url: str, conn) -> None:
    add_articles(conn, 3)
    process.process_pending(database_url)
    nlp_rows = "SELECT article_id, processed_at FROM news.article_nlp ORDER BY 1"
    before = conn.execute(nlp_rows).fetchall()
    mentions = conn.execute("SELECT count(*) FROM news.entity_mentions").fetchone()[0]

    summary = process.process_pending(database_url)
    assert (summary.articles, summary.batches) == (0, 0)
    assert conn.execute(nlp_rows).fetchall() == before
    assert conn.execute("SELECT count(*) FROM news.entity_mentions").fetchone()[0] == mentions


def test_same_entity_across_articles(database_url: str, conn) -> None:
    conn.execute(INSERT_ARTICLE, ("https://e.test/1", "Mưa lớn ở Hà Nội", None, LINES[6]))
    conn.execute(INSERT_ARTICLE, ("https://e.test/2", "Tin Hà Nội", None, "Hà Nội mưa to."))
    conn.commit()
    process.process_pending(database_url)
    rows = conn.execute(
        "SELECT e.id, e.mention_count, e.aliases, count(DISTINCT m.article_id)"
        " FROM news.entities e JOIN news.entity_mentions m ON m.entity_id = e.id"
        " WHERE e.type = 'LOC' AND e.canonical_name = 'Hà Nội' GROUP BY e.id"
    ).fetchall()
    assert len(rows) == 1
    _, count, aliases, articles = rows[0]
    assert articles == 2 and count >= 3 and "Hà Nội" in aliases
    view = conn.execute(
        "SELECT count(*) FROM news.v_article_entities WHERE canonical_name = 'Hà Nội'"
    ).fetchone()[0]
    assert view == 2


def test_changed_article_is_processed_again_without_double_counting(database_url: str, conn):
    (article_id,) = add_articles(conn, 1)
    process.process_pending(database_url)
    conn.execute(
        "UPDATE news.articles SET stage = 'extracted', body = %s WHERE id = %s",
        ("Ông Joe Biden tới Hà Nội.", article_id),
    )
    conn.commit()
    assert process.process_pending(database_url).articles == 1
    assert_consistent(conn)
    surfaces = {r[0] for r in conn.execute("SELECT surface FROM news.entity_mentions")}
    assert {"Joe Biden", "Hà Nội"} <= surfaces


def test_process_batch_claims_one_batch(database_url: str, conn) -> None:
    add_articles(conn, 5)
    with db.connect(database_url, autocommit=True) as worker, process.analyser(1) as analyse:
        result = process.process_batch(worker, 3, analyse)
    assert result.articles == 3
    assert stages(conn) == {"processed": 3, "extracted": 2}


def test_a_text_that_breaks_analysis_does_not_block_the_backlog(
    database_url: str, conn, monkeypatch, caplog
) -> None:
    """Simulated bug: analysing one body raises; that field is stored empty, the rest go on."""
    real = process.nlp.analyse

    def fragile(text: str):
        if "BOOM" in text:
            raise RuntimeError("simulated analysis bug")
        return real(text)

    monkeypatch.setattr(process.nlp, "analyse", fragile)
    add_articles(conn, 2)
    conn.execute(INSERT_ARTICLE, ("https://e.test/boom", "Hà Nội mưa", None, "BOOM"))
    conn.commit()
    summary = process.process_pending(database_url, batch_size=2)
    assert (summary.articles, summary.failed_fields) == (3, 1)
    assert "failed analysis" in summary.format()
    assert "simulated analysis bug" in caplog.text
    assert stages(conn) == {"processed": 3}
    segmented, tokens = conn.execute(
        "SELECT n.segmented, n.tokens FROM news.article_nlp n"
        " JOIN news.articles a ON a.id = n.article_id WHERE a.url = 'https://e.test/boom'"
    ).fetchone()
    assert segmented == "" and tokens["body"] == [] and tokens["title"]


# --- several processes --------------------------------------------------------------

SUMMARY = re.compile(r"processed (\d+) article")


def run_process(database_url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.Popen(
        [str(VNNEWS), "process", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def processed_by(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return int(SUMMARY.search(err).group(1))


@pytest.mark.slow
def test_two_workers_share_a_backlog_without_overlap(database_url: str, conn) -> None:
    add_articles(conn, 60)
    first = run_process(database_url, "--workers", "1", "--batch-size", "2")
    second = run_process(database_url, "--workers", "1", "--batch-size", "2")
    counts = [processed_by(first), processed_by(second)]
    assert sum(counts) == 60  # every article exactly once between them
    assert stages(conn) == {"processed": 60}
    assert_consistent(conn)


@pytest.mark.slow
def test_resumable_after_sigkill(database_url: str, conn) -> None:
    """Acceptance: kill -9 mid-backlog, run again: each article processed exactly once."""
    total = 120
    add_articles(conn, total, size=12)
    victim = run_process(database_url, "--workers", "2", "--batch-size", "4")
    deadline = time.monotonic() + 120
    done = 0
    while done < 8 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
        done = stages(conn).get("processed", 0)
        conn.commit()
    assert victim.poll() is None, "the run finished before it could be killed; grow the backlog"
    victim.send_signal(signal.SIGKILL)  # the parent only: its pool workers die with it
    victim.wait()
    killed_at = stages(conn).get("processed", 0)
    conn.commit()
    assert 0 < killed_at < total
    assert_consistent(conn)  # nothing half-written

    rerun = run_process(database_url, "--workers", "2", "--batch-size", "4")
    assert processed_by(rerun) == total - killed_at  # none repeated, none skipped
    assert stages(conn) == {"processed": total}
    assert_consistent(conn)
    duplicates = conn.execute(
        "SELECT count(*) FROM (SELECT article_id, field, start_offset FROM news.entity_mentions"
        " GROUP BY 1, 2, 3 HAVING count(*) > 1) d"
    ).fetchone()[0]
    assert duplicates == 0


# --- the nlp command ---------------------------------------------------------------------


def test_nlp_command_on_stdin() -> None:
    text = "\n".join(LINES[:3])
    out = subprocess.run(
        [str(VNNEWS), "nlp"], input=text, capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    result = json.loads(out)
    assert len(result["sentences"]) == 3 == len(result["segmented"].split("\n"))
    assert all(text[t["start"] : t["end"]] == t["text"] for t in result["tokens"])
    assert all(text[e["start"] : e["end"]] == e["text"] for e in result["entities"])


def test_nlp_command_jsonl_with_workers(tmp_path: Path) -> None:
    texts = {f"a{i}": "\n".join(article(i)[1:2] + article(i)[3:]) for i in range(12)}
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": k, "text": v}, ensure_ascii=False) for k, v in texts.items()]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    subprocess.run(
        [str(VNNEWS), "nlp", "--jsonl", str(source), str(target), "--workers", "2"],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    results = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in results] == list(texts)
    for r in results:
        text = texts[r["id"]]
        assert set(r) == {"id", "segmented", "sentences", "tokens", "entities"}
        assert all(text[t["start"] : t["end"]] == t["text"] for t in r["tokens"])
        assert all(text[s["start"] : s["end"]] for s in r["sentences"])


def test_title_mentions_take_the_full_name_given_in_the_body():
    article = process.ArticleText(
        1,
        "Ông Gallant tới Lầu Năm Góc",
        None,
        "Bộ trưởng Quốc phòng Israel Yoav Gallant ngày 25/3 đã tới Mỹ. Ông Gallant gặp ông Austin.",
        None,
    )
    keys = {(m.field, m.surface): m.key for m in process.process_article(article).mentions}
    assert keys[("title", "Gallant")] == keys[("body", "Yoav Gallant")] == "yoav gallant"
