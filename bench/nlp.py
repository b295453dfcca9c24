"""Throughput of the processing stage against bare underthesea, in one run.

On the first 500 Tuổi Trẻ 2024 articles (title + lead + body):

  (a) underthesea.ner() sentence by sentence (sentences from underthesea.sent_tokenize):
      the bare library doing segmentation, POS, chunking and NER;
  (b) our stage's per-article work (pipeline.process.process_article:
      normalisation, sentences, segmentation, POS, entities, and the JSON it
      stores) in one process;
  (c) the same work on a pool of --workers processes (default 2), timed from
      before the pool starts to the last result, so start-up is amortised over
      the batch as in ``vnnews process``.

Targets: b/a >= 5 and c/b >= 1.8 on an idle 2-core machine. Timings on a
shared machine are indicative: the load average is printed with them, a
pure-Python loop timed on 1 and on --workers processes shows how much
parallelism the machine actually offered during the run, and the CPU time
of (b) and (c) (workers included) shows whether the pool adds work.

    .venv/bin/python bench/nlp.py [--limit N] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from underthesea import ner, sent_tokenize  # noqa: E402

from pipeline import nlp, process  # noqa: E402

DEFAULT_ARTICLES = REPO.parent / "shared/data/tuoitre2024/articles.jsonl"
TARGET_SINGLE = 5.0  # (b) / (a)
TARGET_POOL = 1.8  # (c) / (b) with two workers
#: Iterations of the calibration loop (~0.3 s per task on one core).
CALIBRATION_LOOP = 3_000_000


def load(path: Path, limit: int) -> list[process.ArticleText]:
    articles = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number >= limit:
                break
            record = json.loads(line)
            articles.append(
                process.ArticleText(
                    number, record["title"], record.get("lead"), record["body"], datetime.now(UTC)
                )
            )
    return articles


def bare_underthesea(articles: list[process.ArticleText]) -> int:
    sentences = 0
    for article in articles:
        for text in (article.title, article.lead, article.body):
            for sentence in sent_tokenize(text or ""):
                ner(sentence)
                sentences += 1
    return sentences


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (pool workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(label: str, count: int, work) -> tuple[float, object]:
    """Run ``work``; print wall time, throughput and the CPU time it used."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = work()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    rate = count / seconds
    print(f"{label:44s} {seconds:7.1f} s {rate:7.2f} articles/s  {cpu:7.1f} CPU-s", flush=True)
    return rate, result


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_ceiling(workers: int) -> float:
    """Speed-up of a pure-Python loop on ``workers`` processes: what the machine allows now."""
    work = [CALIBRATION_LOOP] * (4 * workers)
    started = time.perf_counter()
    list(map(_spin, work))
    alone = time.perf_counter() - started
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        started = time.perf_counter()
        pool.map(_spin, work, chunksize=1)
        pooled_seconds = time.perf_counter() - started
    return alone / pooled_seconds


def pooled(articles: list[process.ArticleText], workers: int) -> list[process.ArticleResult]:
    with process.analyser(workers) as analyse:
        return analyse(articles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=Path, default=DEFAULT_ARTICLES)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.articles.is_file():
        sys.exit(f"{args.articles} is absent (it lives in ../shared)")
    articles = load(args.articles, args.limit)
    n = len(articles)
    print(f"{n} articles, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")

    ner("Hà Nội.")  # load the models outside the timings
    nlp.models()
    rate_a, _ = timed("(a) underthesea.ner per sentence", n, lambda: bare_underthesea(articles))
    rate_b, single = timed("(b) stage, 1 process", n, lambda: pooled(articles, 1))
    label = f"(c) stage, pool of {args.workers} (incl. start-up)"
    rate_c, multi = timed(label, n, lambda: pooled(articles, args.workers))
    if single != multi:
        sys.exit("error: (b) and (c) produced different results")
    mentions = sum(len(r.mentions) for r in single)
    print(f"entity mentions found by the stage: {mentions}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    ceiling = parallel_ceiling(args.workers)
    print(f"machine check: pure Python runs {ceiling:.2f}x faster on {args.workers} processes")
    print(f"b/a = {rate_b / rate_a:.2f}  (target >= {TARGET_SINGLE})")
    print(f"c/b = {rate_c / rate_b:.2f}  (target >= {TARGET_POOL} with 2 workers on 2 idle cores)")


if __name__ == "__main__":
    main()
