"""Extraction on newsim's simulated sites, per template and fault, vnnews vs bare trafilatura.

newsim (``../shared/newsim``) renders real article texts in three templates
(express, portal, magazine) and knows the truth. This exports a static site
from an article JSONL (``newsim.py --static-out``), runs both systems on every
article page and on every listing page, and prints per template (clean pages)
and per fault kind:

  body overlap  character-level, whitespace-normalised, difflib matching
                blocks: recall = matched / len(truth), precision = matched /
                len(extracted), F1 of the two (newsim's README measure)
  min F1, <0.98 the worst page and how many pages fall below 0.98
  title, date   exact title (NFC, whitespace-normalised); date within 60 s
  article       share of pages called articles (vnnews only; bare has no notion)

``bare`` is trafilatura.bare_extraction(html, with_metadata=True) with htmldate
asked for full timestamps. Pages are decoded as UTF-8 (charset detection is
fetch.py's job), so ``charset-1258`` pages test nothing but the label; ``nfd``
pages test NFC; ``html-truncated`` pages hold only 60% of the HTML, so their
recall is bounded by what survived.

    .venv/bin/python bench/extract_newsim.py [--articles FILE] [--split-paragraphs N]
        [--faults SPEC] [--limit N] [--repeat N] [--sweep NAME=V1,V2,...]

``--split-paragraphs 3`` regroups each body into paragraphs of three sentences
first (the shared corpora lost their paragraph breaks; portal's reordering
needs several paragraphs to show) and drops the publisher so that a
single-publisher corpus (Tuổi Trẻ 2024) still covers all three templates.
Without ../shared it says so and exits 0. ``--sweep`` re-runs vnnews alone with
a constant of pipeline/extract.py set to each value (one line per value and
template: mean and worst F1, pages below 0.98, share called articles; then the
listing pages called articles).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
import tempfile
import unicodedata
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import trafilatura
from extract_quality import SHARED, parse_sweep, patched, read_page, speed  # bench/ on sys.path

from pipeline.extract import extract

NEWSIM = SHARED / "newsim/newsim.py"
VMDS = SHARED / "data/vmds/articles.jsonl"
DEFAULT_FAULTS = "nfd:0.05,charset-1258:0.05,html-truncated:0.05"
FULL_TIMESTAMPS = {
    "extensive_search": True,
    "original_date": True,
    "outputformat": "%Y-%m-%dT%H:%M:%S%z",
}
TARGET_OVERLAP = 0.98
SENTENCE_END = re.compile(r"(?<=[.!?…”\"])\s+(?=[\"“A-ZÀ-ỸĐ0-9])")
SPACES = re.compile(r"\s+")


def normalise(text: str | None) -> str:
    return SPACES.sub(" ", unicodedata.normalize("NFC", text or "")).strip()


def overlap(truth: str, predicted: str) -> tuple[float, float, float]:
    """Character-level precision, recall, F1 from difflib's matching blocks."""
    a, b = normalise(truth), normalise(predicted)
    if not a or not b:
        return 0.0, 0.0, 0.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    precision, recall = matched / len(b), matched / len(a)
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return precision, recall, f1


def split_paragraphs(source: Path, target: Path, sentences: int) -> None:
    """Copy a JSONL with each body regrouped into paragraphs of ``sentences`` sentences,
    the lead as newsim's sapo, and no publisher (so the articles spread over newsim's
    default sites and all three templates)."""
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as out:
        for line in src:
            if not line.strip():
                continue
            record = json.loads(line)
            parts = SENTENCE_END.split(record.get("body") or "")
            record["body"] = "\n".join(
                " ".join(parts[i : i + sentences]) for i in range(0, len(parts), sentences)
            )
            if record.get("lead") and not record.get("summary"):
                record["summary"] = record["lead"]
            record.pop("publisher", None)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def export_site(articles: Path, faults: str, folder: Path) -> dict:
    subprocess.run(
        [
            sys.executable,
            str(NEWSIM),
            "--articles",
            str(articles),
            "--faults",
            faults,
            "--static-out",
            str(folder),
        ],
        check=True,
        capture_output=True,
    )
    return json.loads((folder / "truth.json").read_text(encoding="utf-8"))


def local_path(folder: Path, base_url: str, url: str) -> Path:
    path = folder / url[len(base_url) :].lstrip("/")
    return path / "index.html" if url.endswith("/") else path


def predict_vnnews(html: str, url: str) -> tuple[str, str | None, datetime | None, bool]:
    page = extract(html, url)
    return page.body, page.title, page.published_at, page.is_article


def predict_bare(html: str, url: str) -> tuple[str, str | None, datetime | None, bool]:
    document = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, date_extraction_params=FULL_TIMESTAMPS
    )
    if document is None:
        return "", None, None, False
    published = None
    if document.date:
        try:
            published = datetime.fromisoformat(document.date)
        except ValueError:
            published = None
    return document.text or "", document.title, published, True


SYSTEMS = {"vnnews": predict_vnnews, "bare": predict_bare}


def group_of(article: dict) -> str:
    return article["template"] if not article["faults"] else "fault:" + "+".join(article["faults"])


def evaluate(truth: dict, folder: Path, limit: int | None) -> dict[str, dict[str, list]]:
    """rows[system][group] = [(p, r, f1, title_ok, date_ok, is_article), ...]"""
    rows: dict[str, dict[str, list]] = {name: defaultdict(list) for name in SYSTEMS}
    for article in truth["articles"][:limit]:
        html = read_page(local_path(folder, truth["base_url"], article["url"]))
        published = datetime.fromisoformat(article["published_at"])
        for name, predict in SYSTEMS.items():
            body, title, date, is_article = predict(html, article["url"])
            date_ok = (
                date is not None
                and date.tzinfo is not None
                and abs((date - published).total_seconds()) <= 60
            )
            rows[name][group_of(article)].append(
                (
                    *overlap(article["body"], body),
                    normalise(title) == normalise(article["title"]),
                    date_ok,
                    is_article,
                )
            )
    return rows


def listing_pages(folder: Path, truth: dict) -> list[Path]:
    """Home, category, tag and archive pages: every exported HTML file that is no article copy."""
    articles = {local_path(folder, truth["base_url"], a["url"]) for a in truth["articles"]}
    return [
        p
        for p in folder.rglob("*.html")
        if p not in articles and not {"m", "private"} & set(p.relative_to(folder).parts)
    ]


def sweep(specs: list[str], truth: dict, folder: Path, limit: int | None) -> None:
    clean = [a for a in truth["articles"][:limit] if not a["faults"]]
    pages = [(a, read_page(local_path(folder, truth["base_url"], a["url"]))) for a in clean]
    listings = [read_page(p) for p in listing_pages(folder, truth)]
    for name, values in map(parse_sweep, specs):
        for value in values:
            with patched(name, value):
                by_template: dict[str, list[tuple[float, bool]]] = defaultdict(list)
                for article, html in pages:
                    page = extract(html, article["url"])
                    by_template[article["template"]].append(
                        (overlap(article["body"], page.body)[2], page.is_article)
                    )
                called = sum(extract(html).is_article for html in listings)
            cells = []
            for template, data in sorted(by_template.items()):
                f1 = [f for f, _ in data]
                cells.append(
                    f"{template} F1 {mean(f1):.4f} min {min(f1):.3f} "
                    f"<0.98 {sum(f < TARGET_OVERLAP for f in f1)} "
                    f"articles {mean([a for _, a in data]):.3f}"
                )
            print(
                f"{name}={value}: "
                + "; ".join(cells)
                + f"; listings called articles {called}/{len(listings)}"
            )


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def report(rows: dict[str, dict[str, list]]) -> None:
    print("| group | n | system | P | R | F1 | min F1 | <0.98 | title | date±1m | article |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for group in sorted(rows["vnnews"], key=lambda g: (g.startswith("fault:"), g)):
        for name in SYSTEMS:
            data = rows[name][group]
            p, r, f, t, d, a = (list(column) for column in zip(*data, strict=True))
            below = sum(x < TARGET_OVERLAP for x in f)
            article = f"{mean(a):.3f}" if name == "vnnews" else "–"
            print(
                f"| {group} | {len(data)} | {name} | {mean(p):.3f} | {mean(r):.3f} | "
                f"{mean(f):.3f} | {min(f):.3f} | {below} | {mean(t):.3f} | {mean(d):.3f} | "
                f"{article} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=Path, default=VMDS)
    parser.add_argument("--split-paragraphs", type=int, default=0, metavar="N")
    parser.add_argument("--faults", default=DEFAULT_FAULTS)
    parser.add_argument("--limit", type=int, help="only the first N articles")
    parser.add_argument("--repeat", type=int, default=3, help="timing passes (best is kept)")
    parser.add_argument(
        "--sweep",
        action="append",
        metavar="NAME=V1,V2",
        help="run vnnews with a pipeline.extract constant set to each value",
    )
    args = parser.parse_args()
    if not NEWSIM.is_file() or not args.articles.is_file():
        print(f"skipped: {NEWSIM} or {args.articles} is absent")
        return 0

    with tempfile.TemporaryDirectory(prefix="vnnews-newsim-") as tmp:
        folder, articles = Path(tmp) / "site", args.articles
        if args.split_paragraphs:
            articles = Path(tmp) / "articles.jsonl"
            split_paragraphs(args.articles, articles, args.split_paragraphs)
        truth = export_site(articles, args.faults, folder)
        print(
            f"newsim site from {args.articles.name}: {len(truth['articles'])} articles, "
            f"faults {args.faults!r}, paragraphs of {args.split_paragraphs or 'as-is'} "
            "sentences\n"
        )
        if args.sweep:
            sweep(args.sweep, truth, folder, args.limit)
            return 0
        report(evaluate(truth, folder, args.limit))

        listings = listing_pages(folder, truth)
        called = [p for p in listings if extract(read_page(p)).is_article]
        print(
            f"\nlisting pages (home, category, archive, tag): {len(listings)}, "
            f"called articles by vnnews: {len(called)}"
        )
        for path in called[:10]:
            print(f"  {path.relative_to(folder)}")

        sample = [
            {"html": read_page(local_path(folder, truth["base_url"], a["url"]))}
            for a in truth["articles"][:200]
        ]
        ours, bare = speed(sample, args.repeat)
        print(
            f"\nspeed on {len(sample)} article pages (CPU, best of {args.repeat}): "
            f"vnnews {len(sample) / ours:.1f} pages/s, trafilatura.extract() "
            f"{len(sample) / bare:.1f} pages/s, cost ratio {ours / bare:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
