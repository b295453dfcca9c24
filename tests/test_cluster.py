"""Story clustering on real Postgres with the real NLP stage, on hand-written fixture articles.

The fixture (tests/fixtures/cluster_articles.jsonl) has a flood story told by
three outlets plus a wire text republished twice (once undated), a football
story told by three outlets, an undated article on that match, two unrelated
articles and two articles with an empty body (one headline on the match, one
unrelated).
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import psycopg
import pytest
from conftest import FIXTURES

from pipeline import cluster, db, ingest

ARTICLES = FIXTURES / "cluster_articles.jsonl"

SNAPSHOT = {
    "assignments": "SELECT article_id, story_id, similarity, duplicate_of"
    " FROM news.story_articles ORDER BY article_id",
    "stories": "SELECT id, label, key_terms, top_entities, first_published_at, last_published_at,"
    " article_count, outlet_count, text_vector, merged_into FROM news.stories ORDER BY id",
    "events": "SELECT story_id, event, article_id, other_story_id, detail"
    " FROM news.story_events ORDER BY id",
    "df": "SELECT term, df FROM news.term_df ORDER BY term",
    "postings": "SELECT feature, story_id, last_active FROM news.story_postings ORDER BY 1, 2",
}


def snapshot(conn: psycopg.Connection) -> dict[str, list]:
    return {name: conn.execute(query).fetchall() for name, query in SNAPSHOT.items()}


def load(database_url: str, *, cluster_after: bool = True) -> None:
    ingest.load_file(database_url, ARTICLES, workers=1, cluster_after=cluster_after)


def stories_by_external_id(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT a.external_id, sa.story_id FROM news.story_articles AS sa"
        " JOIN news.articles AS a ON a.id = sa.article_id"
    ).fetchall()
    return dict(rows)


def article_id(conn: psycopg.Connection, external_id: str) -> int:
    return conn.execute(
        "SELECT id FROM news.articles WHERE external_id = %s", (external_id,)
    ).fetchone()[0]


@pytest.fixture
def clustered(database_url: str) -> str:
    load(database_url)
    return database_url


def test_stories_group_the_same_event_and_keep_others_apart(clustered: str) -> None:
    with db.connect(clustered) as conn:
        story = stories_by_external_id(conn)
        pending = conn.execute(
            "SELECT count(*) FROM news.articles WHERE stage <> 'clustered'"
        ).fetchone()[0]
    assert pending == 0
    flood = {story[k] for k in ("f1", "f2", "f3", "f4", "f10")}
    match = {story[k] for k in ("f5", "f6", "f7", "f12")}
    assert len(flood) == 1 and len(match) == 1 and flood != match
    others = [story[k] for k in ("f8", "f9", "f11", "f13")]
    assert len(set(others)) == 4
    assert not set(others) & (flood | match)


def test_story_ids_are_founding_article_ids_and_summaries_are_kept(clustered: str) -> None:
    with db.connect(clustered) as conn:
        flood = stories_by_external_id(conn)["f1"]
        assert flood == article_id(conn, "f1")
        row = conn.execute(
            "SELECT label, article_count, outlet_count, first_published_at, last_published_at,"
            " key_terms, top_entities FROM news.v_stories WHERE story_id = %s",
            (flood,),
        ).fetchone()
        events = conn.execute(
            "SELECT event, count(*) FROM news.story_events WHERE story_id = %s GROUP BY event",
            (flood,),
        ).fetchall()
    label, articles, outlets, first, last, key_terms, entities = row
    assert "Quảng Bình" in label
    assert (articles, outlets) == (5, 5)
    assert first.isoformat() == "2024-10-14T00:10:00+00:00"
    assert last.isoformat() == "2024-10-14T04:40:00+00:00"  # the undated copy does not move it
    assert "quảng bình" in key_terms
    assert any(e["name"] == "Quảng Bình" for e in entities)
    assert dict(events) == {"created": 1, "article_added": 4}


def test_near_duplicates_are_linked_to_the_copy_they_repeat(clustered: str) -> None:
    with db.connect(clustered) as conn:
        wire = article_id(conn, "f3")
        rows = conn.execute(
            "SELECT a.external_id, sa.duplicate_of, sa.duplicate_jaccard"
            " FROM news.story_articles AS sa JOIN news.articles AS a ON a.id = sa.article_id"
            " WHERE sa.duplicate_of IS NOT NULL ORDER BY a.external_id"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("f10", wire), ("f4", wire)]
    assert all(r[2] >= cluster.NEAR_DUP_JACCARD for r in rows)


def test_a_late_copy_is_linked_but_placed_by_its_own_date(clustered: str, tmp_path) -> None:
    with db.connect(clustered) as conn:
        wire, body = conn.execute(
            "SELECT id, body FROM news.articles WHERE external_id = 'f3'"
        ).fetchone()
    late = tmp_path / "late.jsonl"
    record = {
        "id": "late",
        "url": "https://tin-f.example/lu-quang-binh-nhin-lai",
        "publisher": "tin-f.example",
        "published_at": "2024-11-20T08:00:00+07:00",
        "title": "Nhìn lại trận lũ tháng 10 ở Quảng Bình",
        "body": body,
    }
    late.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    ingest.load_file(clustered, late, workers=1)
    with db.connect(clustered) as conn:
        story, duplicate_of = conn.execute(
            "SELECT sa.story_id, sa.duplicate_of FROM news.story_articles AS sa"
            " JOIN news.articles AS a ON a.id = sa.article_id WHERE a.external_id = 'late'"
        ).fetchone()
        flood = stories_by_external_id(conn)["f1"]
    assert duplicate_of == wire
    assert story != flood


def test_undated_articles_stand_alone_unless_they_copy_a_dated_one(clustered: str) -> None:
    with db.connect(clustered) as conn:
        story = stories_by_external_id(conn)
        reason = conn.execute(
            "SELECT detail->>'reason' FROM news.story_events WHERE event = 'created'"
            " AND article_id = %s",
            (article_id(conn, "f11"),),
        ).fetchone()[0]
        undated_last = conn.execute(
            "SELECT count(*) FROM news.story_postings WHERE story_id = %s", (story["f11"],)
        ).fetchone()[0]
    # f11 is about the match but has no date: it opens its own story ...
    assert reason == "undated"
    assert story["f11"] not in {story["f5"], story["f12"]}
    # ... and, having no time, never becomes a candidate for dated articles.
    assert undated_last == 0
    # f10 (undated) repeats the wire text and joins the flood story as a duplicate.
    assert story["f10"] == story["f1"]


def test_empty_body_is_placed_by_its_title(clustered: str) -> None:
    with db.connect(clustered) as conn:
        story = stories_by_external_id(conn)
        detail = conn.execute(
            "SELECT detail FROM news.story_events WHERE article_id = %s",
            (article_id(conn, "f12"),),
        ).fetchone()[0]
        alone = article_id(conn, "f13")
    assert story["f12"] == story["f5"]  # a headline on the match joins it
    assert detail["text"] == detail["title"]  # the title stood in for the missing body
    assert story["f13"] == alone  # an unrelated headline opens its own story


def test_rerunning_changes_nothing(clustered: str) -> None:
    with db.connect(clustered) as conn:
        before = snapshot(conn)
        assert cluster.cluster_pending(conn).articles == 0
        # Articles sent back to 'processed' (e.g. re-processed) keep their story.
        conn.execute("UPDATE news.articles SET stage = 'processed'")
        conn.commit()
        summary = cluster.cluster_pending(conn)
        after = snapshot(conn)
    assert (summary.articles, summary.skipped) == (13, 13)
    assert after == before


def test_same_input_in_same_order_gives_the_same_stories(clustered: str) -> None:
    with db.connect(clustered) as conn:
        first = snapshot(conn)
        assert cluster.reset(conn) == 13
        cluster.cluster_pending(conn)
        second = snapshot(conn)
    assert second == first


def test_a_bridging_article_merges_two_stories_and_the_old_id_resolves(database_url) -> None:
    load(database_url, cluster_after=False)
    with db.connect(database_url) as conn:
        # Cluster the flood reports with a join bar no pair clears: each opens a story.
        strict = replace(cluster.ClusterSettings(), join_threshold=2.0)
        ids = [article_id(conn, k) for k in ("f1", "f2")]
        conn.execute("UPDATE news.articles SET stage = 'extracted' WHERE id <> ALL(%s)", (ids,))
        conn.commit()
        cluster.cluster_pending(conn, settings=strict)
        assert stories_by_external_id(conn) == {"f1": ids[0], "f2": ids[1]}
        # A later report close to both shows they are one story.
        conn.execute("UPDATE news.articles SET stage = 'processed' WHERE external_id = 'f3'")
        conn.commit()
        summary = cluster.cluster_pending(
            conn, settings=replace(strict, join_threshold=0.2, merge_threshold=0.3)
        )
        story = stories_by_external_id(conn)
        merged = conn.execute(
            "SELECT story_id, other_story_id FROM news.story_events WHERE event = 'merged'"
        ).fetchall()
        live = {r[0] for r in conn.execute("SELECT story_id FROM news.v_stories")}
        resolved = [cluster.resolve_story(conn, i) for i in ids]
        count = conn.execute(
            "SELECT article_count FROM news.stories WHERE id = %s", (resolved[0],)
        ).fetchone()[0]
    assert summary.merges == 1
    survivor, gone = merged[0]
    assert {survivor, gone} == set(ids)
    assert resolved == [survivor, survivor]
    assert set(story.values()) == {survivor}
    assert live == {survivor}
    assert count == 3

    # Splitting the merged story's founder back out revives its id.
    with db.connect(database_url) as conn:
        assert cluster.split_story(conn, gone, [gone]) == gone
        assert cluster.resolve_story(conn, gone) == gone
        assert stories_by_external_id(conn)[("f1", "f2")[ids.index(gone)]] == gone


def test_split_moves_articles_into_a_new_story_and_logs_it(clustered: str) -> None:
    with db.connect(clustered) as conn:
        flood = stories_by_external_id(conn)["f1"]
        moved = [article_id(conn, k) for k in ("f4", "f3")]
        with pytest.raises(cluster.SplitError):
            cluster.split_story(conn, flood, [flood])  # the founder stays
        with pytest.raises(cluster.SplitError):
            cluster.split_story(conn, flood, [article_id(conn, "f8")])  # not a member
        new = cluster.split_story(conn, flood, moved)
        story = stories_by_external_id(conn)
        counts = dict(
            conn.execute(
                "SELECT story_id, article_count FROM news.v_stories WHERE story_id = ANY(%s)",
                ([flood, new],),
            ).fetchall()
        )
        event = conn.execute(
            "SELECT story_id, other_story_id, detail FROM news.story_events WHERE event = 'split'"
        ).fetchone()
        postings = conn.execute(
            "SELECT count(*) FROM news.story_postings WHERE story_id = %s", (new,)
        ).fetchone()[0]
    assert new == min(moved)
    assert story["f3"] == story["f4"] == new
    assert story["f1"] == story["f2"] == story["f10"] == flood
    assert counts == {flood: 3, new: 2}
    assert event == (flood, new, {"articles": sorted(moved)})
    assert postings > 0  # the new story can take later articles


def test_minhash_estimates_jaccard() -> None:
    words = [f"từ{i}" for i in range(300)]
    a = cluster.shingles(" ".join(words))
    b = cluster.shingles(" ".join(words[:240] + [f"khác{i}" for i in range(60)]))
    true = len(a & b) / len(a | b)
    estimate = cluster.jaccard_estimate(cluster.minhash(a), cluster.minhash(b))
    assert abs(estimate - true) < 0.15
    assert cluster.minhash(a) == cluster.minhash(set(a))
    unrelated = cluster.shingles(" ".join(f"chữ{i}" for i in range(300)))
    assert cluster.jaccard_estimate(cluster.minhash(a), cluster.minhash(unrelated)) < 0.1


def test_terms_skip_punctuation_and_stop_words() -> None:
    assert cluster.terms("Lũ lớn ở Quảng_Bình , và 3.000 nhà bị ngập .") == [
        "lũ",
        "lớn",
        "ở",
        "quảng_bình",
        "3.000",
        "nhà",
        "ngập",
    ]


def test_one_writer_at_a_time(database_url) -> None:
    load(database_url, cluster_after=False)
    done = threading.Event()

    def run() -> None:
        with db.connect(database_url) as conn:
            cluster.cluster_pending(conn)
        done.set()

    with db.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (cluster.CLUSTER_LOCK_ID,))
        writer = threading.Thread(target=run)
        writer.start()
        assert not done.wait(2.0)  # the second writer waits for the lock ...
        with db.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM news.stories").fetchone()[0] == 0
        holder.execute("SELECT pg_advisory_unlock(%s)", (cluster.CLUSTER_LOCK_ID,))
        assert done.wait(60)  # ... and works once it is free
    writer.join()
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM news.story_articles").fetchone()[0] == 13


MARKET_BODY = (
    "Chỉ số VN-Index {move} {points} điểm trong phiên sáng, dòng tiền tập trung vào nhóm "
    "cổ phiếu ngân hàng và bất động sản. Thanh khoản trên sàn HOSE đạt hơn {value} tỉ đồng, "
    "khối ngoại {foreign} ròng khoảng {net} tỉ đồng. Cổ phiếu Vietcombank, VPBank và Vinhomes "
    "dẫn dắt thị trường, trong khi nhóm chứng khoán và thép giao dịch trầm lắng. Các công ty "
    "chứng khoán khuyến nghị nhà đầu tư thận trọng, hạn chế mua đuổi khi chỉ số tiến gần vùng "
    "kháng cự {level} điểm."
)


def _market_reports(path, *, dated: bool):
    days = [
        ("22/10", "2024-10-22T11:45:00+07:00", "giảm", "8,5", "12.400", "bán", "310"),
        ("23/10", "2024-10-23T11:40:00+07:00", "tăng", "6,2", "13.100", "mua", "250"),
    ]
    lines = []
    for n, (day, moment, move, points, value, foreign, net) in enumerate(days):
        prefix = f"Chứng khoán sáng {day}: " if dated else "Chứng khoán sáng nay: "
        record = {
            "id": f"m{n}",
            "url": f"https://tin-{n}.example/chung-khoan-sang-{n}",
            "publisher": f"tin-{n}.example",
            "published_at": moment,
            "title": prefix + f"VN-Index {move} {points} điểm, khối ngoại {foreign} ròng",
            "body": MARKET_BODY.format(
                move=move, points=points, value=value, foreign=foreign, net=net, level="1.280"
            ),
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("dated", [True, False])
def test_daily_reports_that_name_different_days_are_different_stories(
    database_url, tmp_path, dated
) -> None:
    """Two days' market reports share nearly every word; their datelines keep them
    apart, and without the datelines they would be one story."""
    ingest.load_file(database_url, _market_reports(tmp_path / "m.jsonl", dated=dated), workers=1)
    with db.connect(database_url) as conn:
        stories = stories_by_external_id(conn)
    assert (stories["m0"] != stories["m1"]) is dated


def test_datelines_are_days_named_at_the_start_of_a_headline() -> None:
    assert cluster.dateline_days("Sáng 22/10: Sắc đỏ bao trùm") == {(22, 10)}
    assert cluster.dateline_days("Giá vàng hôm nay 5/12/2024 tăng mạnh") == {(5, 12)}
    # an event's date further on, a score, a month and year: not datelines
    assert not cluster.dateline_days("Hà Nội: 12 cửa hàng xăng dầu đóng cửa ngày 31/10")
    assert not cluster.dateline_days("U21 Việt Nam thắng 3-1 trước U21 Sydney")
    assert not cluster.dateline_days("Lạm phát 12/2013 thấp nhất nhiều năm")
    assert cluster.other_days(frozenset({(22, 10)}), frozenset({(23, 10)}))
    assert not cluster.other_days(frozenset({(22, 10)}), frozenset())
    assert not cluster.other_days(frozenset({(22, 10)}), frozenset({(22, 10), (23, 10)}))
