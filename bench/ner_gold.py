"""The hand-checked NER evaluation set: loader, validator and counts.

The set lives in ``bench/ner_gold/gold.jsonl`` as annotations *by reference*: the
news texts stay in ``/work/shared`` (they may not be copied into the repo), so each
line names a sentence by dataset, article id, field and character offsets into the
NFC-normalised field text, with the SHA-1 of the sentence to detect drift. Entities
carry offsets relative to the sentence plus their surface string, so a mismatch
between the annotation and the text is caught here instead of skewing a score.

Rules the annotations follow: ``docs/ner-annotation.md``; how the set was built:
``bench/ner_gold/README.md``.

Run ``python bench/ner_gold.py [SHARED_DIR]`` to validate the set and print its counts.
"""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GOLD_PATH = Path(__file__).resolve().parent / "ner_gold" / "gold.jsonl"
DEFAULT_SHARED = Path(__file__).resolve().parent.parent.parent / "shared"

#: Types in the file. Only the first three are scored; MISC is annotated where it
#: makes a decision visible (e.g. no PER inside "Giải thưởng Hồ Chí Minh") and is
#: not exhaustive.
SCORED_TYPES = ("PER", "LOC", "ORG")
ENTITY_TYPES = (*SCORED_TYPES, "MISC")
SPLITS = ("dev", "test")
FIELDS = ("title", "lead", "body")

#: A final "+" that belongs to a name ("Vietnam+", "Canal+") stays in the span;
#: every other final punctuation mark stays out (docs/ner-annotation.md, 1.2).
NAME_FINAL_PLUS = "+"

#: Where each dataset's texts live under the shared folder.
ARTICLE_FILES = {
    "tuoitre2024": Path("data/tuoitre2024/articles.jsonl"),
    "vmds": Path("data/vmds/articles.jsonl"),
}
SEEDS_DIR = Path("seeds")


class GoldError(ValueError):
    """The gold file and the shared texts disagree (drift, bad offsets, bad types)."""


@dataclass(frozen=True)
class GoldEntity:
    start: int  # offsets into GoldSentence.text
    end: int
    type: str  # PER | LOC | ORG | MISC
    text: str  # text[start:end]


@dataclass(frozen=True)
class GoldSentence:
    sid: str
    dataset: str  # tuoitre2024 | vmds | seeds
    article_id: str
    field: str  # title | lead | body
    text: str  # the sentence, read from the shared folder
    split: str  # dev | test
    entities: tuple[GoldEntity, ...]
    publisher: str
    topic: str

    def scored(self) -> tuple[GoldEntity, ...]:
        """The entities an exact-match PER/LOC/ORG score counts."""
        return tuple(e for e in self.entities if e.type in SCORED_TYPES)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def field_texts(shared_dir: Path, dataset: str) -> dict[tuple[str, str], str]:
    """Every (article id, field) of a dataset, NFC-normalised, as the offsets expect."""
    if dataset == "seeds":
        return {
            (path.stem, "body"): unicodedata.normalize("NFC", path.read_text(encoding="utf-8"))
            for path in sorted((shared_dir / SEEDS_DIR).glob("*.txt"))
        }
    texts: dict[tuple[str, str], str] = {}
    with open(shared_dir / ARTICLE_FILES[dataset], encoding="utf-8") as handle:
        for line in handle:
            article = json.loads(line)
            for field in FIELDS:
                if article.get(field):
                    texts[(article["id"], field)] = unicodedata.normalize("NFC", article[field])
    return texts


def is_word_char(char: str) -> bool:
    return char.isalnum()


def check_entity(text: str, entity: GoldEntity) -> str | None:
    """Why this entity is malformed, or None. Spans sit on word boundaries and carry
    no surrounding space or punctuation (docs/ner-annotation.md, "Spans")."""
    if entity.type not in ENTITY_TYPES:
        return f"unknown type {entity.type!r}"
    if not 0 <= entity.start < entity.end <= len(text):
        return f"offsets {entity.start}-{entity.end} outside the sentence"
    if text[entity.start : entity.end] != entity.text:
        return f"surface {entity.text!r} != text {text[entity.start : entity.end]!r}"
    last_ok = is_word_char(entity.text[-1]) or entity.text.endswith(NAME_FINAL_PLUS)
    if not (is_word_char(entity.text[0]) and last_ok):
        return f"{entity.text!r} starts or ends with a space or punctuation"
    before = text[entity.start - 1] if entity.start else " "
    after = text[entity.end] if entity.end < len(text) else " "
    if is_word_char(before) or is_word_char(after) or after == "+":
        return f"{entity.text!r} cuts a word"
    return None


def check_overlaps(entities: Iterable[GoldEntity]) -> str | None:
    """The scored layer is flat: no two spans may share a character."""
    ordered = sorted(entities, key=lambda e: (e.start, e.end))
    for left, right in zip(ordered, ordered[1:], strict=False):
        if right.start < left.end:
            return f"{left.text!r} overlaps {right.text!r}"
    return None


def entities_problem(text: str, entities: tuple[GoldEntity, ...]) -> str | None:
    """Why this sentence's entities are malformed (first problem found), or None."""
    for entity in entities:
        problem = check_entity(text, entity)
        if problem:
            return problem
    return check_overlaps(entities)


def parse_record(record: dict, sentence_text: str) -> GoldSentence:
    """One gold line plus its sentence text -> a validated GoldSentence."""
    sid = record["sid"]
    if sha1(sentence_text) != record["sha1"]:
        raise GoldError(f"{sid}: the shared text changed (SHA-1 mismatch)")
    if record["split"] not in SPLITS:
        raise GoldError(f"{sid}: unknown split {record['split']!r}")
    entities = tuple(GoldEntity(s, e, t, surface) for s, e, t, surface in record["entities"])
    problem = entities_problem(sentence_text, entities)
    if problem:
        raise GoldError(f"{sid}: {problem}")
    return GoldSentence(
        sid=sid,
        dataset=record["dataset"],
        article_id=record["article_id"],
        field=record["field"],
        text=sentence_text,
        split=record["split"],
        entities=entities,
        publisher=record["publisher"],
        topic=record["topic"],
    )


def read_records(path: Path = GOLD_PATH) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_gold(
    shared_dir: Path, split: str | None = None, path: Path = GOLD_PATH
) -> list[GoldSentence]:
    """The gold sentences (of one split, or all), texts read from ``shared_dir``.

    Raises GoldError when a sentence hash, an entity surface, a type or a span
    boundary does not check out, or when two sids collide.
    """
    if split is not None and split not in SPLITS:
        raise GoldError(f"unknown split {split!r}; expected one of {SPLITS}")
    records = read_records(path)
    duplicates = [sid for sid, n in Counter(r["sid"] for r in records).items() if n > 1]
    if duplicates:
        raise GoldError(f"duplicate sids: {duplicates[:5]}")
    texts: dict[str, dict[tuple[str, str], str]] = {}
    sentences = []
    for record in records:
        if split is not None and record["split"] != split:
            continue
        dataset = record["dataset"]
        if dataset not in texts:
            texts[dataset] = field_texts(shared_dir, dataset)
        field_text = texts[dataset].get((record["article_id"], record["field"]))
        if field_text is None:
            raise GoldError(f"{record['sid']}: no such article field in {dataset}")
        sentence_text = field_text[record["start"] : record["end"]]
        sentences.append(parse_record(record, sentence_text))
    return sentences


def counts(sentences: list[GoldSentence]) -> dict[str, Counter]:
    """Sentence and mention counts by split, type, dataset, publisher and topic."""
    tables: dict[str, Counter] = {
        "sentences by split": Counter(),
        "scored mentions by split": Counter(),
        "mentions by split and type": Counter(),
        "sentences by split and dataset": Counter(),
        "scored mentions by split and dataset": Counter(),
        "sentences without a scored entity, by split": Counter(),
        "sentences by publisher": Counter(),
        "sentences by topic": Counter(),
    }
    for sentence in sentences:
        scored = sentence.scored()
        tables["sentences by split"][sentence.split] += 1
        tables["scored mentions by split"][sentence.split] += len(scored)
        for entity in sentence.entities:
            tables["mentions by split and type"][(sentence.split, entity.type)] += 1
        tables["sentences by split and dataset"][(sentence.split, sentence.dataset)] += 1
        tables["scored mentions by split and dataset"][(sentence.split, sentence.dataset)] += len(
            scored
        )
        if not scored:
            tables["sentences without a scored entity, by split"][sentence.split] += 1
        tables["sentences by publisher"][sentence.publisher] += 1
        tables["sentences by topic"][(sentence.split, sentence.topic)] += 1
    return tables


def main(argv: list[str]) -> int:
    shared = Path(argv[1]) if len(argv) > 1 else DEFAULT_SHARED
    sentences = load_gold(shared)
    print(f"{GOLD_PATH.name}: {len(sentences)} sentences, all hashes and spans check out")
    for title, table in counts(sentences).items():
        print(f"\n{title}:")
        for key, value in sorted(table.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            label = " / ".join(key) if isinstance(key, tuple) else key
            print(f"  {label:45} {value:5}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
