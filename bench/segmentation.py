"""Word-segmentation F1 on the UD Vietnamese-VTB test set: bare underthesea vs our stage.

Gold words are the treebank tokens (a multi-syllable word is one FORM with
spaces). A word is scored as its span of non-space characters in the
sentence text, so the two systems are compared on the same units even where
they cut punctuation or numbers differently.

    .venv/bin/python bench/segmentation.py [--conllu PATH] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from underthesea import word_tokenize  # noqa: E402

from pipeline import nlp  # noqa: E402

DEFAULT_CONLLU = REPO.parent / "shared/data/ud_vtb/vi_vtb-ud-test.conllu"

Span = tuple[int, int]


@dataclass(frozen=True)
class GoldSentence:
    text: str
    words: list[str]


def read_conllu(path: Path) -> Iterator[GoldSentence]:
    text, words = None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text"):
            text = line.split("=", 1)[1].strip()
        elif line and not line.startswith("#"):
            cols = line.split("\t")
            if cols[0].isdigit():  # skip multi-word ranges and empty nodes
                words.append(cols[1])
        elif not line and text is not None:
            yield GoldSentence(text, words)
            text, words = None, []
    if text is not None:
        yield GoldSentence(text, words)


def spans_of(words: Iterable[str]) -> tuple[set[Span], int]:
    """Words as spans over the sentence's non-space characters, and how many they cover.

    A system whose words cover a different number of characters than the gold
    (it rewrote a character) cannot be aligned; such sentences are counted apart.
    """
    spans, pos = set(), 0
    for word in words:
        size = len("".join(word.split()))
        spans.add((pos, pos + size))
        pos += size
    return spans, pos


@dataclass
class Score:
    correct: int = 0
    predicted: int = 0
    gold: int = 0
    misaligned: int = 0

    def add(self, predicted: set[Span], gold: set[Span]) -> None:
        self.correct += len(predicted & gold)
        self.predicted += len(predicted)
        self.gold += len(gold)

    @property
    def f1(self) -> float:
        p = self.correct / self.predicted if self.predicted else 0.0
        r = self.correct / self.gold if self.gold else 0.0
        return 2 * p * r / (p + r) if p + r else 0.0


def stage_words(text: str) -> list[str]:
    analysis = nlp.analyse(text)
    return [t.text for s in analysis.sentences for t in s.tokens]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conllu", type=Path, default=DEFAULT_CONLLU)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    if not args.conllu.is_file():
        sys.exit(f"{args.conllu} is absent (it lives in ../shared)")
    sentences = list(read_conllu(args.conllu))[: args.limit]
    systems = {
        "underthesea.word_tokenize": lambda text: word_tokenize(text),
        "vnnews stage (nlp.analyse)": stage_words,
    }
    print(f"{len(sentences)} sentences from {args.conllu.name}")
    for name, segment in systems.items():
        score = Score()
        started = time.perf_counter()
        for sentence in sentences:
            gold, length = spans_of(sentence.words)
            predicted, predicted_length = spans_of(segment(sentence.text))
            if predicted_length != length:
                score.misaligned += 1
                continue
            score.add(predicted, gold)
        seconds = time.perf_counter() - started
        print(
            f"{name:28s} F1 {score.f1:.4f}  (P/R over {score.predicted}/{score.gold} words, "
            f"{score.misaligned} misaligned sentences skipped, {seconds:.1f} s)"
        )


if __name__ == "__main__":
    main()
