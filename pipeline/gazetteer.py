"""Word lists and name gazetteers for the entity recogniser (pipeline/ner.py).

Everything is matched on *syllables*: whitespace-separated pieces of a word, normalised by
``fold`` (NFC, case-folded, one tone-mark placement). Sources:

- ``pipeline/data/lexicon.yaml``: titles, honorifics, cue words, surnames (written for this
  project);
- ``pipeline/data/{countries,places,organisations}.tsv``: names and aliases (public facts,
  written for this project);
- Vietnamese provinces (63 before and 34 after the 1 July 2025 reform) and districts, read at
  run time from the administrative-unit table that underthesea ships
  (``underthesea/address/data/mapping.json``);
- the lowercase entries of underthesea's ``Viet74K`` word list, which tell ordinary words
  ("Ngoại giao", "Cụ thể") from names.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"

PER, LOC, ORG, MISC = "PER", "LOC", "ORG", "MISC"

# A province's short name that news text uses for the person, not the city: the city is
# "TP.HCM" / "TP Hồ Chí Minh" (places.tsv), the bare name is Hồ Chí Minh himself (rule 2.4).
_SHORT_NAMES_OF_PEOPLE = frozenset({"Hồ Chí Minh"})
# Administrative prefixes in underthesea's table ("Thành phố Hà Nội", "Huyện Phong Điền").
_ADMIN_PREFIX = re.compile(r"^(Thành phố|Tỉnh|Quận|Huyện|Thị xã)\s+", re.IGNORECASE)

# Old-style ("hòa", "thủy") and new-style ("hoà", "thuỷ") tone placement differ only in open
# syllables ending in oa/oe/uy; fold both to the old style that most outlets use.
_TONED = {
    "a": "àáảãạ",
    "e": "èéẻẽẹ",
    "y": "ỳýỷỹỵ",
    "o": "òóỏõọ",
    "u": "ùúủũụ",
}
_NEW_STYLE = re.compile(r"(?<!q)(o[àáảãạèéẻẽẹ]|u[ỳýỷỹỵ])(?!\w)")
_MOVE_TONE = {
    first + _TONED[second][k]: _TONED[first][k] + second
    for first, second in (("o", "a"), ("o", "e"), ("u", "y"))
    for k in range(5)
}


@functools.lru_cache(maxsize=1 << 16)
def fold(text: str) -> str:
    """The form names are compared in: NFC, case-folded, old-style tone placement, and
    "i" for a syllable-final "y" after a consonant ("sỹ" = "sĩ", "Mỹ" = "Mĩ")."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = _NEW_STYLE.sub(lambda m: _MOVE_TONE[m.group(1)], text)
    return _FINAL_Y.sub(lambda m: m.group(1) + _Y_TO_I[m.group(2)], text)


# Spelling variants: after a consonant (but not "qu"), a final "y" and "i" are one sound.
_FINAL_Y = re.compile(r"(?<!\w)([bcdđghklmnprstvx]+)([yỳýỷỹỵ])(?!\w)")
_Y_TO_I = dict(zip("yỳýỷỹỵ", "iìíỉĩị", strict=True))


def syllables(text: str) -> list[str]:
    """Split a phrase the way tokens are split: on whitespace, with commas split off."""
    return text.replace(",", " , ").split()


@dataclass(frozen=True)
class Entry:
    """One gazetteer name: what it is and how it should be written."""

    type: str
    canonical: str
    exact: str  # an acronym ("UN", "IS", "MB") must appear letter for letter; "" otherwise
    capitalised: bool  # the alias starts with a capital, so the text must too
    source: str  # country | place | province | district | organisation
    caps: tuple[bool, ...]  # which syllables of the alias are capitalised


class PhraseSet:
    """Phrases (syllable sequences) with a longest-match lookup at a position."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self._keys = {tuple(fold(s) for s in syllables(p)) for p in phrases}
        self._keys.discard(())
        self._lengths = _lengths_by_first(self._keys)

    def __contains__(self, key: tuple[str, ...]) -> bool:
        return key in self._keys

    @property
    def firsts(self) -> frozenset[str]:
        """The syllables phrases start with."""
        return frozenset(self._lengths)

    def match(self, folded: Sequence[str], i: int, accept: Callable[[int], bool] = bool) -> int:
        """End index of the longest phrase starting at ``folded[i]`` whose end ``accept``
        allows, or ``i`` if none."""
        if i >= len(folded):
            return i
        for n in self._lengths.get(folded[i], ()):
            j = i + n
            if j <= len(folded) and tuple(folded[i:j]) in self._keys and accept(j):
                return j
        return i


def _lengths_by_first(keys: Iterable[tuple[str, ...]]) -> dict[str, tuple[int, ...]]:
    """First syllable -> the lengths of the phrases it starts, longest first: most
    positions start no phrase and cost one dictionary miss."""
    lengths: dict[str, set[int]] = {}
    for key in keys:
        lengths.setdefault(key[0], set()).add(len(key))
    return {first: tuple(sorted(ns, reverse=True)) for first, ns in lengths.items()}


@dataclass(frozen=True)
class Gazetteer:
    names: dict[tuple[str, ...], tuple[Entry, ...]]
    name_lengths: dict[str, tuple[int, ...]]  # first syllable -> name lengths, longest first
    aliases: dict[tuple[str, str], str]  # (type, folded alias) -> canonical name
    place_aliases: dict[str, str]  # folded alias of a country/city/province -> canonical
    honorifics: PhraseSet
    titles: PhraseSet
    title_prefixes: PhraseSet
    org_cues: PhraseSet
    org_connectors: PhraseSet
    loc_cues: PhraseSet
    loc_number_cues: PhraseSet
    loc_prepositions: PhraseSet
    sentence_openers: PhraseSet
    admin_bodies: frozenset[str]  # folded cue phrases
    descriptors: PhraseSet
    misc_cues: PhraseSet
    term_words: frozenset[str]  # folded words after which an acronym is a term
    abbreviations: dict[str, str]  # folded abbreviation -> folded expansion
    surnames: frozenset[str]
    not_entities: PhraseSet
    org_words: PhraseSet
    foreign_keywords: dict[str, str]  # folded foreign word -> ORG | LOC | MISC
    words: frozenset[str]  # folded lowercase dictionary words (multi-syllable joined by space)
    vietnamese_syllables: frozenset[str]

    def lookup(self, surface: Sequence[str], folded: Sequence[str], i: int) -> tuple[int, Entry]:
        """Longest gazetteer name at position i whose case requirements the text meets."""
        if i >= len(folded):
            return i, _NO_ENTRY
        for n in self.name_lengths.get(folded[i], ()):
            j = i + n
            if j > len(folded):
                continue
            for entry in self.names.get(tuple(folded[i:j]), ()):
                if entry.exact and " ".join(surface[i:j]) != entry.exact:
                    continue
                if entry.capitalised and not surface[i][:1].isupper():
                    continue
                return j, entry
        return i, _NO_ENTRY


_NO_ENTRY = Entry("", "", "", False, "", ())


def _is_acronym(alias: str) -> bool:
    letters = [c for c in alias if c.isalpha()]
    return len(alias) <= 5 and " " not in alias and sum(c.isupper() for c in letters) >= 2


def _read_tsv(path: Path) -> list[list[str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            canonical, _, aliases = line.partition("\t")
            rows.append([canonical.strip(), *(a.strip() for a in aliases.split("|") if a.strip())])
    return rows


def _underthesea_dir() -> Path:
    spec = importlib.util.find_spec("underthesea")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("underthesea is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _admin_units() -> tuple[list[list[str]], list[list[str]]]:
    """Vietnamese provinces and districts from underthesea's table, as rows of
    [canonical, aliases...]."""
    path = _underthesea_dir() / "address" / "data" / "mapping.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    provinces = {**data["old_province_names"], **data["province_names"]}
    province_rows = [
        [info["short"], info["name"]]
        for info in provinces.values()
        if info["short"] not in _SHORT_NAMES_OF_PEOPLE
    ]
    districts = {record["old_district"] for record in data["ward_mapping"]}
    district_rows = []
    for district in sorted(districts):
        short = _ADMIN_PREFIX.sub("", district)
        if short != district and not short[:1].isdigit():
            district_rows.append([short])
    return province_rows, district_rows


def _dictionary() -> tuple[frozenset[str], frozenset[str]]:
    path = _underthesea_dir() / "corpus" / "data" / "Viet74K.txt"
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.strip()
        if word and word == word.lower():
            words.add(fold(word))
    syllable_set = {s for w in words for s in w.split()}
    return frozenset(words), frozenset(syllable_set)


@functools.cache
def load() -> Gazetteer:
    """Build the gazetteer once per process (about a quarter of a second)."""
    lexicon = yaml.safe_load((DATA / "lexicon.yaml").read_text(encoding="utf-8"))
    names: dict[tuple[str, ...], list[Entry]] = {}
    aliases: dict[tuple[str, str], str] = {}
    place_aliases: dict[str, str] = {}
    provinces, districts = _admin_units()
    sources = [
        (LOC, "district", districts),
        (LOC, "province", provinces),
        (LOC, "place", _read_tsv(DATA / "places.tsv")),
        (LOC, "country", _read_tsv(DATA / "countries.tsv")),
        (ORG, "organisation", _read_tsv(DATA / "organisations.tsv")),
    ]
    for kind, source, rows in sources:
        for row in rows:
            canonical = row[0]
            for alias in row:
                key = tuple(fold(s) for s in syllables(alias))
                exact = alias if _is_acronym(alias) else ""
                caps = tuple(w[:1].isupper() for w in syllables(alias))
                entry = Entry(kind, canonical, exact, alias[:1].isupper(), source, caps)
                # later sources come first: a curated country or organisation beats a district
                names.setdefault(key, []).insert(0, entry)
                aliases[(kind, " ".join(key))] = canonical
                if source in ("country", "place", "province"):
                    place_aliases[" ".join(key)] = canonical
    words, vietnamese = _dictionary()
    gazetteer = Gazetteer(
        names={k: tuple(v) for k, v in names.items()},
        name_lengths=_lengths_by_first(names),
        aliases=aliases,
        place_aliases=place_aliases,
        honorifics=PhraseSet(lexicon["honorifics"]),
        titles=PhraseSet(lexicon["titles"]),
        title_prefixes=PhraseSet(lexicon["title_prefixes"]),
        org_cues=PhraseSet(lexicon["org_cues"]),
        org_connectors=PhraseSet(lexicon["org_connectors"]),
        loc_cues=PhraseSet(lexicon["loc_cues"]),
        loc_number_cues=PhraseSet(lexicon["loc_number_cues"]),
        loc_prepositions=PhraseSet(lexicon["loc_prepositions"]),
        sentence_openers=PhraseSet(lexicon["sentence_openers"]),
        admin_bodies=frozenset(
            " ".join(fold(w) for w in syllables(p)) for p in lexicon["admin_bodies"]
        ),
        descriptors=PhraseSet(lexicon["descriptors"]),
        misc_cues=PhraseSet(lexicon["misc_cues"]),
        term_words=frozenset(fold(w) for w in lexicon["term_words"]),
        abbreviations={fold(k): fold(v) for k, v in lexicon["abbreviations"].items()},
        surnames=frozenset(fold(s) for s in lexicon["surnames"]),
        not_entities=PhraseSet(lexicon["not_entities"]),
        org_words=PhraseSet(lexicon["org_words"]),
        foreign_keywords={
            fold(word): kind
            for kind, words in lexicon["foreign_keywords"].items()
            for word in words
        },
        words=words,
        vietnamese_syllables=vietnamese,
    )
    log.debug("gazetteer: %d names, %d dictionary words", len(names), len(words))
    return gazetteer
