"""Entity F1 and speed of ``pipeline.ner`` against bare ``underthesea.ner()``.

Scores exact span + type over PER/LOC/ORG on the hand-checked set in
``bench/ner_gold`` (rules: docs/ner-annotation.md). Our recogniser runs the way the
processing stage runs it: on the whole field (title, lead or body) the sentence comes
from, so article-level canonicalisation is in play; mentions inside the gold sentence
are scored. ``underthesea.ner()`` is called on the sentence itself and its BIO tags on
word tokens are turned into character spans.

Speed: articles per second of ``find_entities`` alone (sentences prepared beforehand),
of the whole stage (``nlp.segment_and_tag`` + ``find_entities``), and of calling
``underthesea.ner()`` sentence by sentence on the same articles, with the ratios.

    .venv/bin/python bench/ner_eval.py [--split dev|test|both] [--errors] [--speed N]
                                       [--shared DIR]

``--errors`` lists misses and false alarms, for the dev split only: the test split is
the acceptance set and is not for tuning.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ner_gold import (  # noqa: E402
    DEFAULT_SHARED,
    SCORED_TYPES,
    field_texts,
    load_gold,
    read_records,
)
from underthesea import ner as underthesea_ner  # noqa: E402
from underthesea import sent_tokenize  # noqa: E402

from pipeline import nlp  # noqa: E402
from pipeline.ner import find_entities  # noqa: E402

#: Articles timed for speed (tuoitre2024, in file order); bare ner() costs ~0.4 s each.
SPEED_ARTICLES = 20

Entity = tuple[int, int, str]  # start, end, type (offsets into the sentence)


@dataclass
class Score:
    tp: Counter
    fp: Counter
    fn: Counter

    @classmethod
    def empty(cls) -> Score:
        return cls(Counter(), Counter(), Counter())

    def add(self, gold: set[Entity], predicted: set[Entity]) -> None:
        for _, _, kind in gold & predicted:
            self.tp[kind] += 1
        for _, _, kind in predicted - gold:
            self.fp[kind] += 1
        for _, _, kind in gold - predicted:
            self.fn[kind] += 1

    def prf(self, kind: str | None = None) -> tuple[float, float, float]:
        types = SCORED_TYPES if kind is None else (kind,)
        tp = sum(self.tp[t] for t in types)
        fp = sum(self.fp[t] for t in types)
        fn = sum(self.fn[t] for t in types)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def bio_spans(sentence: str, words: Sequence[str], tags: Sequence[str]) -> set[Entity]:
    """Character spans of BIO-tagged words, aligned to ``sentence`` syllable by syllable.

    underthesea may respell a syllable (tone-mark placement) but keeps its length, so
    each syllable is placed at the next non-space position.
    """
    spans: set[Entity] = set()
    pos = 0
    current: list = []  # [start, end, type]
    for word, tag in zip(words, tags, strict=True):
        start = None
        for syllable in word.split():
            while pos < len(sentence) and sentence[pos].isspace():
                pos += 1
            start = pos if start is None else start
            pos += len(syllable)
        prefix, _, kind = tag.partition("-")
        if current and (prefix != "I" or kind != current[2]):
            spans.add(tuple(current))
            current = []
        if prefix in ("B", "I") and kind in SCORED_TYPES:
            if current:
                current[1] = pos
            else:
                current = [start, pos, kind]
    if current:
        spans.add(tuple(current))
    return spans


def underthesea_entities(sentence: str) -> set[Entity]:
    tagged = underthesea_ner(sentence)
    return bio_spans(sentence, [t[0] for t in tagged], [t[3] for t in tagged])


def our_entities(shared: Path, split: str) -> dict[str, set[Entity]]:
    """sid -> our PER/LOC/ORG mentions inside that gold sentence, found on the whole field."""
    records = [r for r in read_records() if r["split"] == split]
    texts: dict[str, dict[tuple[str, str], str]] = {}
    by_field: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        by_field.setdefault((record["dataset"], record["article_id"], record["field"]), []).append(
            record
        )
    found: dict[str, set[Entity]] = {}
    for (dataset, article_id, field), group in by_field.items():
        if dataset not in texts:
            texts[dataset] = field_texts(shared, dataset)
        text = texts[dataset][(article_id, field)]
        sentences, _ = nlp.segment_and_tag(text)
        mentions = find_entities(text, sentences)
        for record in group:
            lo, hi = record["start"], record["end"]
            found[record["sid"]] = {
                (m.start - lo, m.end - lo, m.type)
                for m in mentions
                if lo <= m.start and m.end <= hi and m.type in SCORED_TYPES
            }
    return found


def print_scores(title: str, scores: dict[str, Score]) -> None:
    print(f"\n{title}")
    print(f"  {'system':12} {'type':7} {'P':>6} {'R':>6} {'F1':>6}   tp   fp   fn")
    for system, score in scores.items():
        for kind in (*SCORED_TYPES, None):
            p, r, f = score.prf(kind)
            types = SCORED_TYPES if kind is None else (kind,)
            tp, fp, fn = (sum(c[t] for t in types) for c in (score.tp, score.fp, score.fn))
            print(
                f"  {system:12} {kind or 'overall':7} {p:6.3f} {r:6.3f} {f:6.3f} "
                f"{tp:4} {fp:4} {fn:4}"
            )


def evaluate(shared: Path, split: str, show_errors: bool) -> None:
    gold = load_gold(shared, split)
    ours = our_entities(shared, split)
    scores = {"underthesea": Score.empty(), "vnnews": Score.empty()}
    for sentence in gold:
        expected = {(e.start, e.end, e.type) for e in sentence.scored()}
        scores["underthesea"].add(expected, underthesea_entities(sentence.text))
        predicted = ours[sentence.sid]
        scores["vnnews"].add(expected, predicted)
        if show_errors and expected != predicted:
            print(f"\n{sentence.sid}\n  {sentence.text}")
            for s, e, t in sorted(expected - predicted):
                print(f"  - miss  {t} {sentence.text[s:e]!r}")
            for s, e, t in sorted(predicted - expected):
                print(f"  + false {t} {sentence.text[s:e]!r}")
    n = sum(len(s.scored()) for s in gold)
    print_scores(f"{split}: {len(gold)} sentences, {n} scored mentions", scores)


def speed(shared: Path, limit: int) -> None:
    with open(shared / "data/tuoitre2024/articles.jsonl", encoding="utf-8") as handle:
        bodies = [unicodedata.normalize("NFC", json.loads(line)["body"]) for line in handle]
    bodies = bodies[:limit]
    nlp.models()  # load the CRF models outside the timings
    find_entities("Hà Nội", nlp.segment_and_tag("Hà Nội")[0])  # and the gazetteer

    started = time.perf_counter()
    analysed = [(body, nlp.segment_and_tag(body)[0]) for body in bodies]
    nlp_seconds = time.perf_counter() - started
    started = time.perf_counter()
    mentions = sum(len(find_entities(body, sentences)) for body, sentences in analysed)
    ner_seconds = time.perf_counter() - started
    started = time.perf_counter()
    underthesea_sentences = 0
    for body in bodies:
        for sentence in sent_tokenize(body):
            underthesea_ner(sentence)
            underthesea_sentences += 1
    bare_seconds = time.perf_counter() - started
    stage = nlp_seconds + ner_seconds
    print(f"\nspeed on {len(bodies)} tuoitre2024 bodies ({mentions} mentions found)")
    print(f"  find_entities alone       {len(bodies) / ner_seconds:8.1f} articles/s")
    print(f"  segment_and_tag + NER     {len(bodies) / stage:8.1f} articles/s")
    print(
        f"  underthesea.ner() per sentence ({underthesea_sentences} sentences) "
        f"{len(bodies) / bare_seconds:8.1f} articles/s"
    )
    print(
        f"  stage speed-up over bare ner(): {bare_seconds / stage:.1f}x "
        f"(find_entities alone: {bare_seconds / ner_seconds:.0f}x)"
    )


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test", "both"), default="dev")
    parser.add_argument("--errors", action="store_true", help="list dev-split errors")
    parser.add_argument(
        "--speed",
        type=int,
        default=SPEED_ARTICLES,
        metavar="N",
        help="articles to time (0 to skip)",
    )
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args(argv)
    splits = ("dev", "test") if args.split == "both" else (args.split,)
    for split in splits:
        evaluate(args.shared, split, args.errors and split == "dev")
    if args.speed:
        speed(args.shared, args.speed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
