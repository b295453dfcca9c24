"""Extraction quality and cost on the saved Vietnamese gold pages, vnnews vs bare trafilatura.

For every page in ``../shared/data/pages`` (articles in ``pages.jsonl``, listing,
home and data pages in ``negatives.jsonl``) this writes one prediction JSONL per
system and scores each with the gold's own ``score.py``:

  vnnews      pipeline.extract.extract(html, url)
  bare        trafilatura.bare_extraction(html, with_metadata=True), all defaults
              (the body is what trafilatura.extract(html) returns; dates are days)
  bare+ts     the same with htmldate asked for full timestamps

Then it prints score.py's tables, a side-by-side summary with the acceptance
targets, the pages where vnnews misses one, and the speed of vnnews against a
bare ``trafilatura.extract(html)`` over the same HTML in the same run (CPU time,
pages interleaved, best of --repeat passes).

    .venv/bin/python bench/extract_quality.py [--out DIR] [--repeat N] [--strict]
    .venv/bin/python bench/extract_quality.py --sweep NAME=V1,V2,... [--sweep ...]

Without ../shared it prints why and exits 0. --strict exits 1 when a target is
missed. Timings on a busy machine are indicative; the ratio is what counts.
--sweep re-scores vnnews alone with a module constant of pipeline/extract.py
set to each value in turn (one summary line per value), to see how much a
threshold matters before changing it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import trafilatura  # noqa: E402

from pipeline import extract as extract_module  # noqa: E402
from pipeline.extract import extract  # noqa: E402

SHARED = Path(os.environ.get("VNNEWS_SHARED", REPO.parent / "shared"))
PAGES = SHARED / "data/pages"
FULL_TIMESTAMPS = {
    "extensive_search": True,
    "original_date": True,
    "outputformat": "%Y-%m-%dT%H:%M:%S%z",
}

#: The acceptance targets (docs: the extraction task), as (summary key, test, label).
TARGETS = (
    ("body_f1", lambda v: v >= 0.97, "mean body F1 >= 0.97"),
    ("title", lambda v: v == 1.0, "every title exact"),
    ("date_1min", lambda v: v == 1.0, "every date within 1 min"),
    ("cap_leak", lambda v: v == 0.0, "no caption in any body"),
    ("bp_leak", lambda v: v == 0.0, "no boilerplate string in any body"),
    ("trl_leak", lambda v: v == 0.0, "no trailer line in any body"),
)
SUMMARY_KEYS = (
    "body_p",
    "body_r",
    "body_f1",
    "full_f1",
    "title",
    "date_1min",
    "date_day",
    "cap_leak",
    "bp_leak",
    "trl_leak",
)


def read_page(path: Path) -> str:
    """The page as text: .gz decompressed, UTF-8 with replacement as the fallback."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace")


def load_pages() -> list[dict]:
    rows = []
    for name in ("pages.jsonl", "negatives.jsonl"):
        with open(PAGES / name, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    for row in rows:
        row["html"] = read_page(PAGES / row["path"])
    return rows


def predict_vnnews(row: dict) -> dict:
    page = extract(row["html"], row.get("url"))
    return {
        "title": page.title,
        "body": page.body,
        "is_article": page.is_article,
        "reason": page.reason,
        "lead": page.lead,
        "author": page.author,
        "published_at": page.published_at.isoformat() if page.published_at else None,
    }


def predict_bare(row: dict, date_params: dict | None = None) -> dict:
    document = trafilatura.bare_extraction(
        row["html"], url=row.get("url"), with_metadata=True, date_extraction_params=date_params
    )
    if document is None:
        return {"title": None, "body": "", "published_at": None}
    return {"title": document.title, "body": document.text or "", "published_at": document.date}


SYSTEMS: dict[str, Callable[[dict], dict]] = {
    "vnnews": predict_vnnews,
    "bare": predict_bare,
    "bare+ts": lambda row: predict_bare(row, FULL_TIMESTAMPS),
}


def score(name: str, rows: list[dict], out: Path) -> dict:
    """Write NAME.jsonl, run score.py on it, print its table, return its JSON."""
    pred_path, json_path = out / f"{name}.jsonl", out / f"{name}.score.json"
    with open(pred_path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"path": row["path"], **SYSTEMS[name](row)}, ensure_ascii=False))
            f.write("\n")
    result = subprocess.run(
        [
            sys.executable,
            str(PAGES / "score.py"),
            str(pred_path),
            "--name",
            name,
            "--json",
            str(json_path),
            "--per-page",
            str(out / f"{name}.tsv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    print(result.stdout)
    return json.loads(json_path.read_text(encoding="utf-8"))


def cpu_seconds(function: Callable[[], object]) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def speed(rows: list[dict], repeat: int) -> tuple[float, float]:
    """CPU seconds per pass over all pages (best of ``repeat``): vnnews, bare extract()."""
    htmls = [row["html"] for row in rows]
    best_ours = best_bare = float("inf")
    for _ in range(repeat):
        ours = bare = 0.0
        for html in htmls:  # interleaved, so load spikes hit both alike
            ours += cpu_seconds(lambda html=html: extract(html))
            bare += cpu_seconds(lambda html=html: trafilatura.extract(html))
        best_ours, best_bare = min(best_ours, ours), min(best_bare, bare)
    return best_ours, best_bare


def parse_sweep(spec: str) -> tuple[str, list[object]]:
    """'NAME=1,2,3' -> ('NAME', [1, 2, 3]), values typed like the constant they replace."""
    name, _, values = spec.partition("=")
    current = getattr(extract_module, name)  # AttributeError names a misspelt constant
    return name, [type(current)(value) for value in values.split(",")]


@contextmanager
def patched(name: str, value: object) -> Iterator[None]:
    """pipeline.extract.NAME = value for the duration (the module reads it at call time)."""
    saved = getattr(extract_module, name)
    setattr(extract_module, name, value)
    try:
        yield
    finally:
        setattr(extract_module, name, saved)


def sweep(specs: list[str], rows: list[dict], out: Path) -> None:
    for name, values in map(parse_sweep, specs):
        for value in values:
            with patched(name, value):
                result = score_quietly(rows, out)
            overall = result["groups"]["ALL"]
            rejected = sum(n["rejected"] for n in result["negatives"])
            print(
                f"{name}={value}: body F1 {overall['body_f1']:.4f}, titles "
                f"{overall['title']:.3f}, dates {overall['date_1min']:.3f}, leaks cap/bp/trl "
                f"{overall['cap_leak']:.3f}/{overall['bp_leak']:.3f}/{overall['trl_leak']:.3f},"
                f" negatives rejected {rejected}/{len(result['negatives'])}"
            )


def score_quietly(rows: list[dict], out: Path) -> dict:
    """vnnews scored by score.py without printing its table."""
    pred_path, json_path = out / "sweep.jsonl", out / "sweep.score.json"
    with open(pred_path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"path": row["path"], **predict_vnnews(row)}, ensure_ascii=False))
            f.write("\n")
    subprocess.run(
        [sys.executable, str(PAGES / "score.py"), str(pred_path), "--json", str(json_path)],
        capture_output=True,
        check=True,
    )
    return json.loads(json_path.read_text(encoding="utf-8"))


def summary_table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in SUMMARY_KEYS:
        cells = []
        for name in names:
            value = results[name]["groups"]["ALL"][key]
            cells.append("–" if value is None else f"{value:.3f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    rejected = []
    for name in names:
        negatives = results[name]["negatives"]
        rejected.append(f"{sum(n['rejected'] for n in negatives)}/{len(negatives)}")
    lines.append("| negatives rejected | " + " | ".join(rejected) + " |")
    return "\n".join(lines)


def misses(result: dict) -> list[str]:
    """Pages where vnnews misses a target, one line each."""
    out = []
    for page in result["pages"]:
        problems = [
            label
            for key, ok, label in TARGETS
            if key != "body_f1" and page[key] is not None and not ok(float(page[key]))
        ]
        if page["body_f1"] < 0.97:
            problems.append(f"body F1 {page['body_f1']:.3f}")
        if problems:
            out.append(f"  {page['id']}: " + "; ".join(problems))
    out += [f"  {n['path']}: not rejected" for n in result["negatives"] if not n["rejected"]]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="keep predictions and scores here")
    parser.add_argument("--repeat", type=int, default=3, help="timing passes (best is kept)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--sweep",
        action="append",
        metavar="NAME=V1,V2",
        help="score vnnews with a pipeline.extract constant set to each value",
    )
    args = parser.parse_args()
    if not (PAGES / "score.py").is_file():
        print(f"skipped: {PAGES} is absent (set VNNEWS_SHARED to the shared folder)")
        return 0

    rows = load_pages()
    out = args.out or Path(tempfile.mkdtemp(prefix="vnnews-extract-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        sweep(args.sweep, rows, out)
        return 0
    results = {name: score(name, rows, out) for name in SYSTEMS}

    print("## Summary (mean over article pages)\n")
    print(summary_table(results))
    ours = results["vnnews"]
    overall = ours["groups"]["ALL"]
    failed = [
        label for key, ok, label in TARGETS if overall[key] is not None and not ok(overall[key])
    ]
    if not all(n["rejected"] for n in ours["negatives"]):
        failed.append("every negative rejected")
    print("\nvnnews targets: " + ("all met" if not failed else "MISSED: " + ", ".join(failed)))
    for line in misses(ours):
        print(line)

    ours_s, bare_s = speed(rows, args.repeat)
    pages = len(rows)
    print(f"\n## Speed ({pages} pages, CPU time, best of {args.repeat})\n")
    print(f"vnnews extract():      {pages / ours_s:6.1f} pages/s ({1000 * ours_s / pages:.1f} ms)")
    print(f"trafilatura.extract(): {pages / bare_s:6.1f} pages/s ({1000 * bare_s / pages:.1f} ms)")
    print(f"cost ratio vnnews / bare: {ours_s / bare_s:.3f} (budget: <= 1.15)")
    print(f"\npredictions and scores: {out}")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
