"""Story clustering quality on VMDS (gold stories) and a sanity check on Tuổi Trẻ 2024.

VMDS: 628 real articles in 199 hand-built stories. They are ingested in a
fresh database, processed by the real NLP stage, clustered in publication
order by ``pipeline.cluster``, and the stored assignments are scored with
B-cubed precision / recall / F1 against ``cluster_id``. The gold label is read
here, from the JSONL file, only for scoring: the pipeline never sees it
(``pipeline.ingest`` ignores the field).

Printed, in one run:
  * the defaults' P / R / F1 (target F1 >= 0.95) and the story-size distribution;
  * the sensitivity of F1 to JOIN_THRESHOLD (the main parameter);
  * with --sweep: each other parameter varied in turn (the figures the
    constants in pipeline/cluster.py cite);
  * ablations: the text cosine alone (no title, entities or time) and the
    trivial baselines (every article alone, one story per publication day);
  * with --tuoitre: the same pipeline on 1,000 Tuổi Trẻ articles (no gold): the
    story-size distribution and the largest stories' headlines to inspect for
    chaining.

    .venv/bin/python bench/cluster_quality.py [--sweep] [--tuoitre] [--keep] [--reuse DB]

The database server is DATABASE_URL's (or the local one on 127.0.0.1:5432);
a scratch database is created per corpus and dropped afterwards unless --keep.
--reuse DB skips ingest and processing and re-clusters an existing database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from pipeline import cluster, db, ingest, process  # noqa: E402

SHARED = Path(os.environ.get("VNNEWS_SHARED", REPO.parent / "shared"))
VMDS = SHARED / "data/vmds/articles.jsonl"
TUOITRE = SHARED / "data/tuoitre2024/articles.jsonl"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_F1 = 0.95
VIETNAM = timezone(timedelta(hours=7))
SENSITIVITY = (0.15, 0.175, 0.20, 0.225, 0.25, 0.275, 0.30)

STORY_ARTICLES = """
SELECT a.url, sa.story_id, a.title, a.published_at
FROM news.story_articles AS sa JOIN news.articles AS a ON a.id = sa.article_id
"""


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER


@contextmanager
def scratch_database(name: str, keep: bool) -> Iterator[str]:
    admin = server_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def load_corpus(url: str, path: Path, workers: int) -> None:
    with db.ready_connection(url) as conn:
        started = time.monotonic()
        print(ingest.ingest_jsonl(conn, path).format(), f"({time.monotonic() - started:.1f} s)")
    print(process.process_pending(url, workers=workers).format(), flush=True)


def gold_labels(path: Path) -> dict[str, str]:
    """Stored url -> gold story, read from the file (never from the database)."""
    labels = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            labels[ingest.parse_record(line).url] = json.loads(line)["cluster_id"]
    return labels


def bcubed(predicted: dict[str, object], gold: dict[str, str]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 over the items both sides know."""
    items = [k for k in gold if k in predicted]
    by_pred: dict[object, set[str]] = defaultdict(set)
    by_gold: dict[str, set[str]] = defaultdict(set)
    for k in items:
        by_pred[predicted[k]].add(k)
        by_gold[gold[k]].add(k)
    precision = recall = 0.0
    for k in items:
        p, g = by_pred[predicted[k]], by_gold[gold[k]]
        common = len(p & g)
        precision += common / len(p)
        recall += common / len(g)
    precision /= len(items)
    recall /= len(items)
    return precision, recall, 2 * precision * recall / (precision + recall)


def run_clustering(url: str, settings: cluster.ClusterSettings) -> tuple[dict, list, float]:
    with db.ready_connection(url) as conn:
        cluster.reset(conn)
        summary = cluster.cluster_pending(conn, settings=settings)
        rows = conn.execute(STORY_ARTICLES).fetchall()
    assignment = {url_: story for url_, story, _, _ in rows}
    return assignment, rows, statistics.median(summary.assign_seconds)


def size_distribution(assignment: dict[str, object]) -> str:
    sizes = Counter(Counter(assignment.values()).values())
    return ", ".join(f"{size}:{count}" for size, count in sorted(sizes.items()))


def best_over_thresholds(url: str, gold: dict, settings: cluster.ClusterSettings) -> str:
    """P / R / F1 at the threshold (of SENSITIVITY) that maximises F1 for these settings."""
    scored = [
        (bcubed(run_clustering(url, replace(settings, join_threshold=t))[0], gold), t)
        for t in SENSITIVITY
    ]
    (p, r, f), threshold = max(scored, key=lambda item: item[0][2])
    return f"P {p:.3f} R {r:.3f} F1 {f:.3f} (best threshold {threshold})"


#: One-at-a-time variations printed by --sweep (everything else at its default).
SWEEPS = {
    "title_weight": (0.0, 0.1, 0.3),
    "entity_weight": (0.0, 0.1, 0.4),
    "time_weight": (0.0, 0.2),
    "size_weight": (0.0, 0.05, 0.15),
    "merge_threshold": (0.3, 0.4, 9.0),
    "window": (timedelta(days=1), timedelta(days=2), timedelta(days=5)),
}


def evaluate_vmds(url: str, sweep: bool) -> None:
    gold = gold_labels(VMDS)
    defaults = cluster.ClusterSettings()
    assignment, _, median = run_clustering(url, defaults)
    p, r, f = bcubed(assignment, gold)
    verdict = "OK" if f >= TARGET_F1 else "BELOW TARGET"
    print(
        f"\nVMDS defaults: B-cubed P {p:.3f}  R {r:.3f}  F1 {f:.3f}  "
        f"(target >= {TARGET_F1}: {verdict}); {len(set(assignment.values()))} stories "
        f"for {len(set(gold.values()))} gold; median assign {median * 1000:.1f} ms"
    )
    print(f"story sizes (size:count): {size_distribution(assignment)}")

    print("\nsensitivity to JOIN_THRESHOLD (other parameters at their defaults)")
    print(f"{'threshold':>10} {'P':>6} {'R':>6} {'F1':>6} {'stories':>8}")
    for threshold in SENSITIVITY:
        assignment, _, _ = run_clustering(url, replace(defaults, join_threshold=threshold))
        p, r, f = bcubed(assignment, gold)
        mark = "  <- default" if threshold == defaults.join_threshold else ""
        print(
            f"{threshold:>10.3f} {p:6.3f} {r:6.3f} {f:6.3f} {len(set(assignment.values())):8d}"
            f"{mark}"
        )

    if sweep:
        print("\none parameter at a time, at the default threshold (merge 9.0 = no merges)")
        for name, values in SWEEPS.items():
            for value in values:
                assignment, _, _ = run_clustering(url, replace(defaults, **{name: value}))
                p, r, f = bcubed(assignment, gold)
                print(f"  {name:>15} = {value!s:<16} P {p:.3f} R {r:.3f} F1 {f:.3f}", flush=True)

    print("\nablations and baselines")
    text_only = replace(defaults, title_weight=0.0, entity_weight=0.0, time_weight=0.0)
    print(f"  text cosine only (+ size penalty): {best_over_thresholds(url, gold, text_only)}")
    no_size = replace(defaults, size_weight=0.0)
    print(f"  no size penalty:                   {best_over_thresholds(url, gold, no_size)}")
    singletons = {k: k for k in gold}
    print(
        "  every article alone:               P {:.3f} R {:.3f} F1 {:.3f}".format(
            *bcubed(singletons, gold)
        )
    )
    with db.connect(url) as conn:
        days = dict(conn.execute("SELECT url, published_at::date FROM news.articles").fetchall())
    print(
        "  one story per day:                 P {:.3f} R {:.3f} F1 {:.3f}".format(
            *bcubed(days, gold)
        )
    )


def inspect_tuoitre(url: str) -> None:
    assignment, rows, median = run_clustering(url, cluster.ClusterSettings())
    sizes = Counter(assignment.values())
    print(
        f"\nTuổi Trẻ 2024: {len(assignment)} articles in {len(sizes)} stories; "
        f"median assign {median * 1000:.1f} ms"
    )
    print(f"story sizes (size:count): {size_distribution(assignment)}")
    with db.connect(url) as conn:
        merges = conn.execute(
            "SELECT count(*) FROM news.story_events WHERE event = 'merged'"
        ).fetchone()[0]
    print(f"merges: {merges}")
    titles: dict[object, list[str]] = defaultdict(list)
    for _, story, title, published in sorted(rows, key=lambda r: r[3]):
        titles[story].append(f"{published.astimezone(VIETNAM):%d/%m %H:%M}  {title}")
    for story, size in sizes.most_common(8):
        print(f"\n  story {story} ({size} articles)")
        for line in titles[story][:12]:
            print("    " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tuoitre", action="store_true", help="also inspect Tuổi Trẻ 2024")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--reuse", metavar="DB", help="re-cluster this VMDS database")
    parser.add_argument("--reuse-tuoitre", metavar="DB", help="re-cluster this Tuổi Trẻ database")
    parser.add_argument("--workers", type=int, default=2, help="NLP processes")
    parser.add_argument("--sweep", action="store_true", help="vary each parameter in turn")
    args = parser.parse_args()
    if not VMDS.exists():
        sys.exit(f"{VMDS} is absent")

    if args.reuse:
        evaluate_vmds(psycopg.conninfo.make_conninfo(server_url(), dbname=args.reuse), args.sweep)
    else:
        with scratch_database(f"vnnews_bench_vmds_{os.getpid()}", args.keep) as url:
            load_corpus(url, VMDS, args.workers)
            evaluate_vmds(url, args.sweep)
    if args.reuse_tuoitre:
        inspect_tuoitre(psycopg.conninfo.make_conninfo(server_url(), dbname=args.reuse_tuoitre))
    elif args.tuoitre:
        with scratch_database(f"vnnews_bench_tuoitre_{os.getpid()}", args.keep) as url:
            load_corpus(url, TUOITRE, args.workers)
            inspect_tuoitre(url)


if __name__ == "__main__":
    main()
