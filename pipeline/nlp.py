"""Vietnamese text analysis: normalisation, sentences, word segmentation, POS.

The stored text is never changed. ``analyse`` takes the NFC form of its input
and builds a *canonical copy of the same length* (spaces unified, "ð" fixed,
tone marks placed in one style), so every offset found on the copy is also an
offset into the NFC text. Syllables come from underthesea's own tokeniser
regex, sentences are cut on those syllables, and the two CRF models underthesea
ships (word segmentation, POS) tag them.

Tone-mark style: the canonical form is the "new" placement (hoà, khoẻ, thuỷ:
the mark on the second vowel of an open oa/oe/uy), because that is what the
models were trained on: their feature strings contain 204 ``hoà``/``hoá`` and
no ``hòa``/``hóa`` (word segmentation), 58 against 0 (POS). underthesea's own
``text_normalize``/``word_tokenize`` rewrite to the other style (hòa), which
the models have never seen. Word-segmentation F1 on UD Vietnamese-VTB
(``bench/segmentation.py``): test 0.9578 with this style against 0.9570 with
the other (bare ``word_tokenize``: 0.9571); dev 0.9561 against 0.9540 (0.9538).

Speed: underthesea's POS predictor rebuilds every column of the sentence for
every token and template (quadratic per sentence) in Python.
``TemplateFeaturizer`` parses the same templates once and produces the same
feature strings in linear time, so the unchanged CRF model gives identical
tags (``tests/test_nlp.py`` proves it against ``underthesea.pos_tag``). The
word segmenter's ``underthesea_core.CRFFeaturizer`` is linear already, but
converting its nested Python lists costs more than the features themselves;
the same class with that featuriser's function semantics is faster and gives
the same strings (tested against it). Models load once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
from underthesea.pipeline.text_normalize.text_normalizer import token_map
from underthesea.pipeline.word_tokenize import regex_tokenize
from underthesea_core import CRFTagger

from pipeline.ner import Mention, find_entities

log = logging.getLogger(__name__)

#: Stored with every analysis; bump when a change alters segmentation, tags or offsets.
NLP_VERSION = "2"

_UNDERTHESEA = Path(importlib.util.find_spec("underthesea").submodule_search_locations[0])
WS_MODEL_DIR = _UNDERTHESEA / "pipeline/word_tokenize/models/ws_crf_vlsp2013_20230727"
POS_MODEL_PATH = _UNDERTHESEA / "pipeline/pos_tag/pos_crf_2017_10_11.bin"

#: The feature templates the POS model (pos_crf_2017_10_11) was trained with, as
#: underthesea's CRFPOSTagPredictor declares them; column 1 is the (unknown) tag "X".
POS_TEMPLATE = (
    "T[-2].lower", "T[-1].lower", "T[0].lower", "T[1].lower", "T[2].lower",
    "T[0].istitle", "T[-1].istitle", "T[1].istitle",
    "T[-2]", "T[-1]", "T[0]", "T[1]", "T[2]",
    "T[-2,-1]", "T[-1,0]", "T[0,1]", "T[1,2]",
    "T[-3][1]", "T[-2][1]", "T[-1][1]",
    "T[-3,-2][1]", "T[-2,-1][1]",
)  # fmt: skip


# --- normalisation ------------------------------------------------------------

#: Characters that become a plain space in the canonical copy (one character
#: each, so offsets stay 1:1): no-break and typographic spaces, zero-width
#: characters, BOM, soft hyphen, tabs and other control characters.
_SPACE_LIKE = frozenset(
    "\t\u00a0\u00ad\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u200b\u200c\u200d\u202f\u205f\u2060\u3000\ufeff"
)
#: Line breaks always end a sentence; "\r" (alone or in "\r\n") is one.
_LINE_BREAKS = frozenset("\n\r\v\f\u0085\u2028\u2029")
#: Look-alikes the tokeniser would not recognise: the eth for đ (underthesea
#: rewrites it too), hyphens and minus signs that break "F-35" or "1-1-2025"
#: apart, and full-width punctuation and digits (their ASCII forms).
_CHAR_FIXES = {
    "ð": "đ", "Ð": "Đ", "\u2010": "-", "\u2011": "-", "\u2212": "-",
    **{chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)},
}  # fmt: skip

_TONE_MARKS = {"\u0300": 1, "\u0301": 2, "\u0309": 3, "\u0303": 4, "\u0323": 5}
_TONE_CHARS = {tone: mark for mark, tone in _TONE_MARKS.items()}
_VOWEL_BASES = "aăâeêioôơuưy"
_MODIFIED_VOWELS = "ăâêôơư"


def _vowel_tables() -> tuple[dict[str, tuple[str, int]], dict[tuple[str, int], str]]:
    """(toned vowel -> (bare vowel, tone)) and its inverse, both cases, NFC."""
    split: dict[str, tuple[str, int]] = {}
    join: dict[tuple[str, int], str] = {}
    for bare in _VOWEL_BASES + _VOWEL_BASES.upper():
        for tone in range(6):
            toned = unicodedata.normalize("NFC", bare + _TONE_CHARS[tone]) if tone else bare
            split[toned] = (bare, tone)
            join[(bare, tone)] = toned
    return split, join


_SPLIT_VOWEL, _JOIN_VOWEL = _vowel_tables()
#: One Vietnamese syllable spelled with bare (toneless, lower-case) letters.
_SYLLABLE = re.compile(
    r"(ngh|ng|gh|gi|qu|ch|kh|nh|ph|th|tr|[bcdđghklmnpqrstvx])?"
    r"([aăâeêioôơuưy]{1,3})"
    r"(ch|ng|nh|[cmnpt])?"
)
#: Open two-vowel rhymes whose tone goes on the second vowel in the new style.
_NEW_STYLE_RHYMES = frozenset({"oa", "oe", "uy"})
_WORD_RUN = re.compile(r"[^\W\d_]+")
_WORD_CHAR = re.compile(r"\w")


def _tone_position(vowels: str, has_final: bool) -> int:
    """Index in ``vowels`` (bare, lower-case) that carries the tone mark."""
    modified = [i for i, v in enumerate(vowels) if v in _MODIFIED_VOWELS]
    if "ơ" in vowels:
        return vowels.index("ơ")
    if modified:
        return modified[-1]
    if has_final or len(vowels) == 1:
        return len(vowels) - 1
    if len(vowels) == 2:
        return 1 if vowels in _NEW_STYLE_RHYMES else 0
    return 1


def _canonical_syllable(word: str) -> str:
    """``word`` with its tone mark where the canonical style puts it (same length).

    Anything that is not one well-formed Vietnamese syllable with one tone mark
    (foreign names, typos with two marks) comes back unchanged.
    """
    bare: list[str] = []
    tone, toned_at = 0, -1
    for i, ch in enumerate(word):
        vowel = _SPLIT_VOWEL.get(ch)
        if vowel is None:
            bare.append(ch)
        else:
            bare.append(vowel[0])
            if vowel[1]:
                if tone:
                    return word
                tone, toned_at = vowel[1], i
    if not tone:
        return word
    lower = "".join(bare).lower()
    parts = _SYLLABLE.fullmatch(lower)
    if parts is None:
        return word
    start = parts.start(2)
    target = start + _tone_position(parts.group(2), parts.group(3) is not None)
    if target == toned_at:
        return word
    chars = bare[:]
    chars[target] = _JOIN_VOWEL[(bare[target], tone)]
    return "".join(chars)


@functools.lru_cache(maxsize=65536)
def canonical_word(word: str) -> str:
    """Tone marks of every syllable in ``word`` (NFC) in the canonical style."""
    return _WORD_RUN.sub(lambda m: _canonical_syllable(m.group()), word)


def canonical_text(text: str) -> str:
    """The analysis copy of NFC ``text``: same length, one spelling per word.

    Spaces unified, line breaks as "\\n", look-alike characters fixed, tone
    marks placed canonically; everything else (quotes, dashes, ellipses) is
    kept as written, since the tokeniser knows them all.
    """
    chars = []
    for ch in text:
        if ch in _LINE_BREAKS:
            chars.append("\n")
        elif ch in _SPACE_LIKE or ch < " ":
            chars.append(" ")
        else:
            chars.append(_CHAR_FIXES.get(ch, ch))
    return _WORD_RUN.sub(lambda m: canonical_word(m.group()), "".join(chars))


@functools.lru_cache(maxsize=65536)
def model_form(syllable: str) -> str:
    """The spelling the CRF models see for one syllable token.

    underthesea's token map fixes common misspellings (tìên -> tiền) but also
    rewrites to the hòa style; the canonical pass afterwards restores the
    style the models were trained on. Map entries that produce malformed
    text (stray combining marks) are ignored.
    """
    fixed = token_map.get(syllable, syllable) if len(syllable) <= 6 else syllable
    form = canonical_word(fixed)
    if any(unicodedata.combining(ch) for ch in form):
        return canonical_word(syllable)
    return form


# --- sentences ----------------------------------------------------------------

#: underthesea's tokeniser regex (specials, abbreviations, URLs, dates, numbers,
#: words, punctuation), compiled privately so later ``fixed_words`` calls to
#: underthesea cannot change it under us.
_SYLLABLE_TOKEN = re.compile(regex_tokenize.regex_patterns_combine, re.VERBOSE | re.UNICODE)

_SENTENCE_END = re.compile(r"[.?!…]+")
#: Tokens that may follow the final punctuation and still belong to the sentence.
_CLOSERS = frozenset("\"'”’»)]")
#: Characters that may open a new sentence after final punctuation and a space.
_OPENERS = frozenset("\"'“‘«([-–—•*+")
#: Abbreviations written with a full stop that never end a sentence in news
#: text (titles, administrative units, Latin/English shorthand).
ABBREVIATIONS = frozenset(
    {
        "GS", "PGS", "TS", "ThS", "Th.S", "BS", "KS", "CN", "NCS", "TSKH", "KTS", "LS",
        "NSND", "NSƯT", "NGND", "NGƯT", "CKI", "CKII", "BSCKI", "BSCKII",
        "Q", "P", "TP", "Tp", "TX", "H", "X", "TT", "St", "Mr", "Mrs", "Ms", "Dr", "Jr",
        "Sr", "Co", "Ltd", "Inc", "Corp", "No", "vs", "tr", "ts",
    }
)  # fmt: skip


#: A list number opening a sentence ("2. Vitamin D ...", "II. Kết quả"): its dot ends nothing.
_ENUMERATOR = re.compile(r"\d{1,3}|[IVX]{1,4}|[a-zA-Z]")


@dataclass(frozen=True)
class Piece:
    """One tokeniser token: offsets into the analysed text and its characters."""

    start: int
    end: int
    text: str


def _is_abbreviation(token: str) -> bool:
    """A dotted word like "TP.", "PGS.TS.", "D.C." or "Q." that is not a sentence end.

    A single capital is an initial ("George W. Bush"); ")." or '".' are not words.
    """
    stem = token.rstrip(".")
    parts = stem.split(".")
    if not all(p.isalpha() for p in parts):
        return False
    if len(parts) == 1:
        return stem in ABBREVIATIONS or (len(stem) == 1 and stem.isupper())
    return all(len(p) == 1 for p in parts) or all(p in ABBREVIATIONS for p in parts)


def _pieces(text: str) -> list[Piece]:
    """Tokeniser tokens of the canonical text, with sentence-final dots split off.

    The regex keeps a trailing dot on all-caps words ("WHO." in "của WHO. Ông"),
    which would hide a sentence end; such dots become their own token unless
    the word is a known abbreviation.
    """
    pieces = []
    for m in _SYLLABLE_TOKEN.finditer(text):
        start, end, token = m.start(), m.end(), m.group()
        if (
            len(token) > 1
            and token.endswith(".")
            and not _SENTENCE_END.fullmatch(token)
            and not _is_abbreviation(token)
        ):
            pieces.append(Piece(start, end - 1, token[:-1]))
            pieces.append(Piece(end - 1, end, "."))
            continue
        pieces.append(Piece(start, end, token))
    return pieces


def _starts_sentence(piece: Piece, following: Piece | None) -> bool:
    first = piece.text[0]
    if first.isupper() or first.isdigit():
        return True
    if first in _OPENERS and following is not None and following.start == piece.end:
        return following.text[0].isupper() or following.text[0].isdigit()
    return first in "-–—•*+"


def split_sentences(text: str) -> list[list[Piece]]:
    """Tokens of canonical ``text`` grouped into sentences.

    A line break always ends a sentence. Otherwise a sentence ends after
    ".", "?", "!", "..." or "…" (plus closing quotes/brackets stuck to it)
    when a space follows and the next token starts like a sentence: a capital,
    a digit, an opening quote before a capital, or a bullet. Dots inside
    tokens ("TP.HCM", "32.000", "Q.1"), after abbreviations ("PGS.TS.",
    "St.", "D.C.") and after a list number opening a sentence ("2.") never
    end one.
    """
    pieces = _pieces(text)
    sentences: list[list[Piece]] = []
    current: list[Piece] = []
    ended = False  # the last token(s) were final punctuation (+ closers)
    for i, piece in enumerate(pieces):
        if current:
            gap = text[current[-1].end : piece.start]
            following = pieces[i + 1] if i + 1 < len(pieces) else None
            if "\n" in gap or (ended and gap and _starts_sentence(piece, following)):
                sentences.append(current)
                current = []
                ended = False
        is_end = _SENTENCE_END.fullmatch(piece.text) is not None and not (
            piece.text == "."
            and current
            and current[-1].end == piece.start
            and (
                _is_abbreviation(current[-1].text + ".")
                or (len(current) == 1 and _ENUMERATOR.fullmatch(current[0].text))
            )
        )
        if is_end:
            ended = True
        elif not (ended and piece.text in _CLOSERS and current and current[-1].end == piece.start):
            ended = False
        current.append(piece)
    if current:
        sentences.append(current)
    return sentences


# --- CRF models -----------------------------------------------------------------

_TEMPLATE = re.compile(
    r"T\[(?P<index1>-?\d+)(,(?P<index2>-?\d+))?\](\[(?P<column>.*)\])?(\.(?P<function>.*))?"
)


@dataclass(frozen=True)
class _Template:
    prefix: str
    index1: int
    index2: int | None
    column: int
    function: str | None


#: A template function: word (or space-joined window) -> feature value.
Function = Callable[[str], str]


def python_functions(dictionary: Collection[str]) -> dict[str, Function]:
    """The functions of underthesea's Python featuriser (``pipeline/*/tagged_feature.py``)."""

    def istitle(word: str) -> str:
        parts = word.split(" ")
        return str(bool(word) and all(parts) and all(p[0].istitle() for p in parts))

    return {
        "lower": str.lower,
        "istitle": istitle,
        "isdigit": lambda w: str(w.isdigit()),
        "isallcap": lambda w: str(all(ch.istitle() for ch in w)),
        "is_in_dict": lambda w: str(w.lower() in dictionary),
    }


#: What ``underthesea_core`` accepts as an integer for ``isdigit`` (Rust's i32 parse).
_I32 = re.compile(r"[+-]?[0-9]+")
_I32_RANGE = range(-(2**31), 2**31)


def core_functions(dictionary: Collection[str]) -> dict[str, Function]:
    """The functions of ``underthesea_core.CRFFeaturizer`` (the word segmenter's).

    They differ from the Python ones: ``istitle`` holds when each part's first
    character is unchanged by upper-casing (so "," and "3" are titles),
    ``isdigit`` when the text parses as a 32-bit integer ("-5" too), and the
    dictionary is matched as given against the lower-cased text.
    """

    def isdigit(word: str) -> str:
        return str(_I32.fullmatch(word) is not None and int(word) in _I32_RANGE)

    def istitle(word: str) -> str:
        if " " not in word:  # the common case: one syllable
            return "True" if word[:1].upper() == word[:1] else "False"
        return str(all(p[:1].upper() == p[:1] for p in word.split(" ")))

    return {
        "lower": str.lower,
        "istitle": istitle,
        "isdigit": isdigit,
        "is_in_dict": lambda w: str(w.lower() in dictionary),
    }


class TemplateFeaturizer:
    """underthesea's template features (``T[-1,0][1].lower`` ...) in linear time.

    Produces exactly the strings of underthesea's featurisers (same prefixes,
    BOS/EOS padding, True/False spellings and function semantics, chosen with
    ``functions``), so a CRF model trained on those gives the same tags. Rows
    are tuples of columns (word, then tags predicted so far).
    """

    def __init__(self, template: Sequence[str], functions: Mapping[str, Function]):
        self.templates = tuple(self._parse(t) for t in template)
        self.functions = functions

    @staticmethod
    def _parse(syntax: str) -> _Template:
        m = _TEMPLATE.match(syntax)
        if m is None:
            raise ValueError(f"not a feature template: {syntax!r}")
        index2 = m.group("index2")
        return _Template(
            prefix=f"{syntax}=",
            index1=int(m.group("index1")),
            index2=int(index2) if index2 else None,
            column=int(m.group("column") or 0),
            function=m.group("function"),
        )

    def features(self, rows: Sequence[Sequence[str]]) -> list[list[str]]:
        """One list of feature strings per row.

        Each template is one list operation over the sentence: the windows of
        ``width`` words are joined (and passed through the function) once,
        then shifted into place with BOS/EOS padding, in the order
        underthesea checks them (BOS first, then EOS for either end).
        """
        n = len(rows)
        columns: dict[str, list[str]] = {}
        windows: dict[tuple[int, int, str | None], list[str]] = {}
        per_template = []
        for t in self.templates:
            width = 1 if t.index2 is None else t.index2 - t.index1 + 1
            key = (t.column, width, t.function)
            values = windows.get(key)
            if values is None:
                column = columns.get(t.column)
                if column is None:
                    column = columns[t.column] = [row[t.column] for row in rows]
                if width == 1:
                    values = column
                else:
                    values = [" ".join(column[j : j + width]) for j in range(n - width + 1)]
                if t.function:
                    values = list(map(self.functions[t.function], values))
                windows[key] = values
            bos = min(max(-t.index1, 0), n)
            eos_from = min(max(n - width + 1 - t.index1, bos), n)
            shifted = (
                ["BOS"] * bos
                + values[bos + t.index1 : eos_from + t.index1]
                + ["EOS"] * (n - eos_from)
            )
            per_template.append([t.prefix + v for v in shifted])
        return [list(features) for features in zip(*per_template, strict=True)]


class Models:
    """The word-segmentation and POS CRF models, loaded once per process."""

    def __init__(self) -> None:
        self.ws_featurizer = TemplateFeaturizer(
            joblib.load(WS_MODEL_DIR / "features.bin"),
            core_functions(frozenset(joblib.load(WS_MODEL_DIR / "dictionary.bin"))),
        )
        self.ws_tagger = CRFTagger()
        self.ws_tagger.load(str(WS_MODEL_DIR / "models.bin"))
        self.pos_featurizer = TemplateFeaturizer(POS_TEMPLATE, python_functions(frozenset()))
        self.pos_tagger = CRFTagger()
        self.pos_tagger.load(str(POS_MODEL_PATH))

    def segment(self, syllables: Sequence[str]) -> list[str]:
        """B-W/I-W tags for one sentence of syllable tokens."""
        if not syllables:
            return []
        return self.ws_tagger.tag(self.ws_featurizer.features([(s,) for s in syllables]))

    def pos(self, words: Sequence[str]) -> list[str]:
        """POS tags for one sentence of words (syllables joined by spaces)."""
        if not words:
            return []
        return self.pos_tagger.tag(self.pos_featurizer.features([(w, "X") for w in words]))


@functools.cache
def models() -> Models:
    log.info("loading underthesea CRF models")
    return Models()


# --- analysis -------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    start: int  # offsets into the NFC text that was analysed
    end: int
    text: str  # text[start:end]; multi-syllable words contain spaces
    pos: str  # underthesea POS tag (N, Np, V, A, E, CH, M, ...)


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    tokens: tuple[Token, ...]


@dataclass(frozen=True)
class Analysis:
    text: str  # the NFC text all offsets refer to
    sentences: tuple[Sentence, ...]
    segmented: str  # seed format: one sentence per line, "_" joins syllables, punctuation split
    entities: tuple[Mention, ...]  # from ner.find_entities


@dataclass(frozen=True)
class _Word:
    start: int
    end: int
    form: str  # the model forms of its syllables, joined by spaces


def _is_vietnamese_syllable(form: str) -> bool:
    bare = "".join(_SPLIT_VOWEL.get(ch, (ch,))[0] for ch in form)
    return _SYLLABLE.fullmatch(bare.lower()) is not None


def _may_join(left: str, right: str) -> bool:
    """Whether two adjacent syllables may be one word, whatever the segmenter says.

    The model sometimes glues across kinds that never form a word in its own
    training data: punctuation ("]_Nguồn"), a capitalised foreign name and a
    Vietnamese word ("Israel_hủy", "cho_Israel"), digits and letters
    ("tối_25/3"). Vetoing these keeps punctuation split off (the seed format)
    and raises word F1 on UD Vietnamese-VTB dev from 0.9561 to 0.9572 (test:
    0.9578 to 0.9579; bench/segmentation.py).
    """
    if not (_WORD_CHAR.search(left) and _WORD_CHAR.search(right)):
        return False
    if any(ch.isdigit() for ch in left) != any(ch.isdigit() for ch in right):
        return False
    return not (
        (_is_foreign_name(left) and _is_lower_vietnamese(right))
        or (_is_lower_vietnamese(left) and _is_foreign_name(right))
    )


def _is_foreign_name(form: str) -> bool:
    return form[:1].isupper() and form.isalpha() and not _is_vietnamese_syllable(form)


def _is_lower_vietnamese(form: str) -> bool:
    return form.islower() and _is_vietnamese_syllable(form)


def _words(pieces: Sequence[Piece], forms: Sequence[str], tags: Sequence[str]) -> list[_Word]:
    """Syllables grouped into words by the segmenter's B-W/I-W tags (and ``_may_join``)."""
    words: list[_Word] = []
    previous = ""
    for piece, form, tag in zip(pieces, forms, tags, strict=True):
        if tag == "I-W" and words and _may_join(previous, form):
            last = words[-1]
            words[-1] = _Word(last.start, piece.end, f"{last.form} {form}")
        else:
            words.append(_Word(piece.start, piece.end, form))
        previous = form
    return words


def segment_and_tag(text: str) -> tuple[tuple[Sentence, ...], str]:
    """Sentences with POS-tagged words of NFC ``text``, and the seed-format text."""
    m = models()
    sentences = []
    lines = []
    for pieces in split_sentences(canonical_text(text)):
        forms = [model_form(p.text) for p in pieces]
        words = _words(pieces, forms, m.segment(forms))
        tags = m.pos([w.form for w in words])
        tokens = tuple(
            Token(w.start, w.end, text[w.start : w.end], tag)
            for w, tag in zip(words, tags, strict=True)
        )
        sentences.append(Sentence(tokens[0].start, tokens[-1].end, tokens))
        lines.append(" ".join(w.form.replace(" ", "_") for w in words))
    return tuple(sentences), "\n".join(lines)


def analysis_json(analysis: Analysis) -> dict:
    """The JSON shape of ``vnnews nlp`` (offsets into ``analysis.text``)."""
    return {
        "segmented": analysis.segmented,
        "sentences": [{"start": s.start, "end": s.end} for s in analysis.sentences],
        "tokens": [
            {"start": t.start, "end": t.end, "text": t.text, "pos": t.pos}
            for s in analysis.sentences
            for t in s.tokens
        ],
        "entities": [
            {
                "start": m.start,
                "end": m.end,
                "type": m.type,
                "text": m.text,
                "canonical": m.canonical,
            }
            for m in analysis.entities
        ],
    }


def analyse(text: str) -> Analysis:
    """Normalise, split, segment, POS-tag and find entities in one text."""
    nfc = unicodedata.normalize("NFC", text)
    sentences, segmented = segment_and_tag(nfc)
    return Analysis(nfc, sentences, segmented, tuple(find_entities(nfc, sentences)))
