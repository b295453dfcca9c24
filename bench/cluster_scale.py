"""Cost of placing one article as the story store grows: 1k, 10k and 100k stored articles.

A block is the 1,000 Tuổi Trẻ 2024 articles (24 days, ~42 a day: one outlet's
real rate). It is ingested, processed by the real NLP stage and clustered by
the real path once. The store is then grown by copying the block's clustering
state in SQL (articles, story assignments, stories with their centroids,
postings, MinHash signatures and buckets), each copy shifted 24 days later
with its ids offset, and the document frequencies scaled: the per-day rate,
and so the number of stories active in a window, stays what it is in reality
while the tables grow. Copied bodies are left empty (nothing reads an old
article's text) and copied LSH buckets are salted per copy (real corpora do not
repeat every text once per month; unsalted, every lookup would find all copies).

At each size, the next block's first --probe articles are inserted as processed
(article, NLP and entity rows copied from the block) and placed by
``cluster.cluster_pending``: the timed path is the real one, per article and
transaction. Printed: the median and p90 per article at each size, the
100k / 1k ratio (target <= 2), and the pure-Python share of the work (features,
MinHash and scoring without the database) on the same articles for reference.

    .venv/bin/python bench/cluster_scale.py [--sizes 1000 10000 100000] [--probe 300] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from cluster_quality import TUOITRE, load_corpus, scratch_database  # noqa: E402

from pipeline import cluster, db  # noqa: E402

TARGET_RATIO = 2.0
BLOCK_DAYS = 24
#: Ids of copy k are the block's ids + k * ID_STRIDE (the block's ids stay below it).
ID_STRIDE = 1_000_000

COPY_ARTICLES = """
INSERT INTO news.articles (id, url, publisher, external_id, title, lead, body, author,
                           published_at, stage)
OVERRIDING SYSTEM VALUE
SELECT id + %(offset)s, url || '#copy' || %(copy)s, publisher, external_id, title, NULL, '',
       NULL, published_at + %(shift)s, 'clustered'
FROM news.articles WHERE id < %(stride)s
"""

COPY_STORIES = """
INSERT INTO news.stories (id, label, label_article_id, label_score, key_terms, top_entities,
                          first_published_at, last_published_at, article_count, outlet_count,
                          text_vector, title_vector, entity_vector, merged_into)
SELECT id + %(offset)s, label, label_article_id + %(offset)s, label_score, key_terms,
       top_entities, first_published_at + %(shift)s, last_published_at + %(shift)s,
       article_count, outlet_count, text_vector, title_vector, entity_vector,
       merged_into + %(offset)s
FROM news.stories WHERE id < %(stride)s
ORDER BY merged_into NULLS FIRST
"""

COPY_ASSIGNMENTS = """
INSERT INTO news.story_articles (article_id, story_id, similarity, duplicate_of,
                                 duplicate_jaccard)
SELECT article_id + %(offset)s, story_id + %(offset)s, similarity, duplicate_of + %(offset)s,
       duplicate_jaccard
FROM news.story_articles WHERE article_id < %(stride)s
"""

COPY_POSTINGS = """
INSERT INTO news.story_postings (feature, story_id, last_active)
SELECT feature, story_id + %(offset)s, last_active + %(shift)s
FROM news.story_postings WHERE story_id < %(stride)s
"""

COPY_SIGNATURES = """
INSERT INTO news.article_minhash (article_id, signature)
SELECT article_id + %(offset)s, signature FROM news.article_minhash WHERE article_id < %(stride)s
"""

COPY_BANDS = """
INSERT INTO news.minhash_bands (band, bucket, article_id)
SELECT band, bucket # (%(copy)s::bigint * 2654435761), article_id + %(offset)s
FROM news.minhash_bands WHERE article_id < %(stride)s
"""

SCALE_DF = """
UPDATE news.term_df AS d SET df = d.df + b.df FROM block_term_df AS b WHERE b.term = d.term;
UPDATE news.entity_df AS d SET df = d.df + b.df FROM block_entity_df AS b
 WHERE b.entity_id = d.entity_id
"""

SAVE_BLOCK_DF = """
CREATE TABLE block_term_df AS SELECT term, df FROM news.term_df;
CREATE TABLE block_entity_df AS SELECT entity_id, df FROM news.entity_df
"""

COUNT_COPIES = """
UPDATE news.cluster_counters SET value = value + %(documents)s WHERE name = 'documents'
"""

PROBE_ARTICLES = """
INSERT INTO news.articles (id, url, publisher, external_id, title, lead, body, author,
                           published_at, stage)
OVERRIDING SYSTEM VALUE
SELECT id + %(offset)s, url || '#copy' || %(copy)s, publisher, external_id, title, lead, body,
       author, published_at + %(shift)s, 'processed'
FROM news.articles WHERE id = ANY(%(ids)s)
"""

PROBE_NLP = """
INSERT INTO news.article_nlp (article_id, nlp_version, segmented_title, segmented_lead,
                              segmented, sentences, tokens)
SELECT article_id + %(offset)s, nlp_version, segmented_title, segmented_lead, segmented,
       sentences, tokens
FROM news.article_nlp WHERE article_id = ANY(%(ids)s)
"""

PROBE_MENTIONS = """
INSERT INTO news.entity_mentions (article_id, field, start_offset, end_offset, entity_id, surface)
SELECT article_id + %(offset)s, field, start_offset, end_offset, entity_id, surface
FROM news.entity_mentions WHERE article_id = ANY(%(ids)s)
"""

FIRST_ARTICLES = "SELECT id FROM news.articles WHERE id < %s ORDER BY published_at, id LIMIT %s"


def add_copy(conn: psycopg.Connection, copy: int, block_size: int) -> None:
    params = {
        "offset": copy * ID_STRIDE,
        "copy": copy,
        "shift": timedelta(days=BLOCK_DAYS * copy),
        "stride": ID_STRIDE,
    }
    with conn.transaction():
        for statement in (
            COPY_ARTICLES,
            COPY_STORIES,
            COPY_ASSIGNMENTS,
            COPY_POSTINGS,
            COPY_SIGNATURES,
            COPY_BANDS,
        ):
            conn.execute(statement, params)
        conn.execute(SCALE_DF)
        conn.execute(COUNT_COPIES, {"documents": block_size})


def probe(conn: psycopg.Connection, url: str, copy: int, count: int) -> list[float]:
    """Insert the next copy's first ``count`` articles as processed and time their placement."""
    ids = [r[0] for r in conn.execute(FIRST_ARTICLES, (ID_STRIDE, count))]
    params = {
        "offset": copy * ID_STRIDE,
        "copy": copy,
        "shift": timedelta(days=BLOCK_DAYS * copy),
        "ids": ids,
    }
    with conn.transaction():
        for statement in (PROBE_ARTICLES, PROBE_NLP, PROBE_MENTIONS):
            conn.execute(statement, params)
    with psycopg.connect(url, autocommit=True) as maintenance:
        maintenance.execute("VACUUM ANALYZE")
    summary = cluster.cluster_pending(conn)
    assert summary.articles == count, summary
    return summary.assign_seconds


def bare_python(conn: psycopg.Connection, count: int) -> list[float]:
    """The same articles' features, MinHash and scoring against 40 stories, without SQL."""
    ids = [r[0] for r in conn.execute(FIRST_ARTICLES, (ID_STRIDE, count))]
    stories = [
        cluster._story_state(row)
        for row in conn.execute(
            "SELECT" + cluster.STORY_COLUMNS + "FROM news.stories WHERE id < %s"
            " ORDER BY article_count DESC, id LIMIT 40",
            (ID_STRIDE,),
        )
    ]
    term_df = dict(conn.execute("SELECT term, df FROM news.term_df"))
    entity_df = dict(conn.execute("SELECT entity_id, df FROM news.entity_df"))
    documents = conn.execute("SELECT value FROM news.cluster_counters").fetchone()[0]
    settings = cluster.ClusterSettings()
    times = []
    for article_id in ids:
        with conn.transaction():
            loaded = cluster._load_article(conn, article_id)
        assert loaded is not None
        article = loaded[0]
        started = time.perf_counter()
        vectors = cluster.article_vectors(article, term_df, entity_df, documents)
        cluster.band_buckets(cluster.minhash(article.body_shingles))
        for story in stories:
            cluster.score(vectors, story, timedelta(0), settings)
        times.append(time.perf_counter() - started)
    return times


def ms(values: list[float]) -> str:
    p90 = statistics.quantiles(values, n=10)[-1]
    return f"median {statistics.median(values) * 1000:6.1f} ms  p90 {p90 * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--probe", type=int, default=300, help="articles timed per size")
    parser.add_argument("--workers", type=int, default=2, help="NLP processes for the block")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    if not TUOITRE.exists():
        sys.exit(f"{TUOITRE} is absent")

    with scratch_database(f"vnnews_bench_scale_{os.getpid()}", args.keep) as url:
        load_corpus(url, TUOITRE, args.workers)
        with db.ready_connection(url) as conn:
            cluster.cluster_pending(conn)
            block_size = conn.execute("SELECT count(*) FROM news.articles").fetchone()[0]
            conn.execute(SAVE_BLOCK_DF)
            conn.commit()
            bare = bare_python(conn, args.probe)
            results: dict[int, list[float]] = {}
            copies = 1  # copy 0 is the block itself
            for size in sorted(args.sizes):
                started = time.monotonic()
                while copies * block_size < size:
                    add_copy(conn, copies, block_size)
                    copies += 1
                stored = conn.execute("SELECT count(*) FROM news.articles").fetchone()[0]
                grown = time.monotonic() - started
                results[size] = probe(conn, url, copies, args.probe)
                copies += 1  # the probed copy is part of the store from now on
                print(
                    f"{stored:>7} stored articles: {ms(results[size])}"
                    f"   (store grown in {grown:.0f} s)",
                    flush=True,
                )
            print(f"pure-Python part of the same work (no SQL): {ms(bare)}")
            smallest, largest = min(results), max(results)
            ratio = statistics.median(results[largest]) / statistics.median(results[smallest])
            verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
            print(
                f"median ratio {largest} / {smallest}: {ratio:.2f} "
                f"(target <= {TARGET_RATIO}: {verdict})"
            )


if __name__ == "__main__":
    main()
