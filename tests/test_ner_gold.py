"""The NER gold set: it loads against the shared texts, is big and varied enough to
be the acceptance set, and its loader refuses drifted or malformed annotations."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import ner_gold  # noqa: E402  (bench/ is not a package)
from ner_gold import ENTITY_TYPES, SCORED_TYPES, GoldError, load_gold  # noqa: E402

pytestmark = pytest.mark.shared

#: The acceptance thresholds the brief fixes for the held-out split.
MIN_TEST_SENTENCES = 330
MIN_TEST_MENTIONS = 900
MIN_VMDS_PUBLISHERS = 10


@pytest.fixture(scope="module")
def gold(shared_dir: Path) -> list[ner_gold.GoldSentence]:
    return load_gold(shared_dir)


def test_every_sentence_and_span_checks_out(gold):
    # load_gold verified hashes and surfaces; re-check the invariants it promises.
    assert gold
    for sentence in gold:
        assert ner_gold.check_overlaps(sentence.entities) is None, sentence.sid
        for entity in sentence.entities:
            assert entity.type in ENTITY_TYPES
            assert sentence.text[entity.start : entity.end] == entity.text
            assert ner_gold.check_entity(sentence.text, entity) is None, sentence.sid


def test_test_split_meets_the_acceptance_thresholds(shared_dir):
    test = load_gold(shared_dir, split="test")
    mentions = sum(len(s.scored()) for s in test)
    assert len(test) >= MIN_TEST_SENTENCES
    assert mentions >= MIN_TEST_MENTIONS
    for kind in SCORED_TYPES:
        assert sum(e.type == kind for s in test for e in s.entities) >= 100, kind
    publishers = {s.publisher for s in test if s.dataset == "vmds"}
    assert len(publishers) >= MIN_VMDS_PUBLISHERS
    assert {s.dataset for s in test} == {"tuoitre2024", "vmds"}
    empty = sum(not s.scored() for s in test) / len(test)
    assert 0.04 <= empty <= 0.2


def test_splits_share_no_article(gold):
    splits_of = {}
    for sentence in gold:
        key = (sentence.dataset, sentence.article_id)
        splits_of.setdefault(key, set()).add(sentence.split)
    assert all(len(splits) == 1 for splits in splits_of.values())
    assert Counter(s.split for s in gold)["dev"] >= 100


def test_same_sentence_text_is_not_in_both_splits(gold):
    splits_of = {}
    for sentence in gold:
        splits_of.setdefault(sentence.text, set()).add(sentence.split)
    assert all(len(splits) == 1 for splits in splits_of.values())


def _tampered(tmp_path: Path, change) -> Path:
    records = ner_gold.read_records()
    record = next(r for r in records if r["entities"] and len(r["entities"][0][3]) > 3)
    change(record)
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(sha1="0" * 40), "SHA-1"),
        (lambda r: r.update(end=r["end"] - 1), "SHA-1"),
        (lambda r: r["entities"][0].__setitem__(3, r["entities"][0][3] + "x"), "surface"),
        (lambda r: r["entities"][0].__setitem__(2, "GPE"), "unknown type"),
        (lambda r: r["entities"].append(list(r["entities"][0])), "overlaps"),
        (lambda r: r.update(split="train"), "unknown split"),
    ],
)
def test_loader_refuses_broken_annotations(shared_dir, tmp_path, change, message):
    path = _tampered(tmp_path, change)
    with pytest.raises(GoldError, match=message):
        load_gold(shared_dir, path=path)


def test_loader_refuses_a_span_that_cuts_a_word(shared_dir, tmp_path):
    def cut(record):
        start, end, kind, surface = record["entities"][0]
        record["entities"] = [[start, end - 1, kind, surface[:-1]]]

    with pytest.raises(GoldError, match="cuts a word|space or punctuation"):
        load_gold(shared_dir, path=_tampered(tmp_path, cut))


def test_gold_file_is_what_the_annotations_compile_to(shared_dir):
    spec = importlib.util.spec_from_file_location("ner_gold_build", BENCH / "ner_gold" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert build.compile_records(shared_dir, []) == ner_gold.read_records()
