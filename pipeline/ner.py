"""Named entities (PER, LOC, ORG) with character offsets, canonicalised within an article.

Rules over the POS-tagged words that ``pipeline.nlp`` produces, plus the gazetteers in
``pipeline.gazetteer``; annotation conventions follow ``docs/ner-annotation.md``. The text
is read as syllables (whitespace pieces of words), so a word-segmentation slip such as
"Israel_hủy" does not hide a name. Left to right, each position is one of:

- a role (title, rank, honorific): the next name is a person ("Bộ trưởng Quốc phòng
  Israel Yoav Gallant" -> LOC "Israel", PER "Yoav Gallant");
- an organisation cue with its body ("Bộ Ngoại giao Mỹ", "UBND tỉnh Quảng Nam",
  "công an huyện Lạng Giang");
- a place cue with its name ("tỉnh Bắc Giang", "quận 12", "sông Hồng");
- a gazetteer name (countries, cities, provinces, districts, well-known organisations);
- a run of capitalised syllables, typed by context, Vietnamese surnames and whether its
  syllables are Vietnamese at all.

Runs that stay untyped are settled at article level: "Gallant" is a person when "Yoav
Gallant" is. Nothing here calls underthesea's NER or chunker (their Python featurisers
cost ten times the whole NLP stage); the work is dictionary lookups, linear in the
sentence length.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pipeline import gazetteer
from pipeline.gazetteer import LOC, MISC, ORG, PER, Entry, PhraseSet, fold

if TYPE_CHECKING:
    from pipeline.nlp import Sentence

log = logging.getLogger(__name__)

#: Punctuation after which a capital letter says nothing (a sentence or quote opens).
OPENERS = frozenset({"“", '"', "'", "‘", ":", "—", "…", "•", "*", ".", "!", "?", "«", ";"})
#: Lowercase particles that may sit inside a foreign name ("Ursula von der Leyen").
NAME_PARTICLES = frozenset({
    "von", "van", "der", "de", "den", "la", "le", "da", "di", "du", "dos", "bin", "ibn", "al",
    "el", "y",
})  # fmt: skip
#: Longest Vietnamese personal name taken from a bare run of syllables ("Nguyễn Thị Minh
#: Khai" has 4); longer capitalised runs are usually a name glued to something else.
MAX_VIETNAMESE_NAME = 4
#: Longest untitled run of Vietnamese syllables read as a person when nothing else types
#: it and the tagger calls every word Np ("Bằng Kiều", "Tiến Minh"); bench/ner_eval.py dev:
#: +8 PER found, +3 false; on 80 other articles the Np condition removed 13 false ones.
MAX_BARE_NAME = 3
#: Capitalised, these name Viet Nam's institutions (4.5); before a place they describe
#: another country's ("Chính phủ Mỹ" opening a sentence).
GOVERNMENT = frozenset({("chính", "phủ"), ("quốc", "hội"), ("nhà", "nước")})
#: POS tags of words that are never names when capitalised alone (pronouns, adverbs,
#: conjunctions, prepositions, determiners, numerals).
FUNCTION_TAGS = frozenset({"P", "R", "C", "CC", "E", "L", "M"})
#: Kinship words that stay honorifics when capitalised mid-sentence ("Bác Hồ").
CAPITAL_HONORIFICS = frozenset(
    {"bác", "ông", "bà", "cô", "chú", "chị", "cụ", "thầy", "mẹ", "cha", "bố", "anh", "em"}
)
#: Words before a country that make it a nationality ("người Anh"), never a given name.
NATIONALITY_WORDS = frozenset({"người", "nước", "phía", "dân", "quân", "tiếng", "hàng", "gốc"})
#: Tokens that join the items of a list, whose untyped items take the type of the first.
LIST_JOINERS = frozenset({",", "và", "hoặc", "cùng", "với", "-", "–", "/"})
#: Compass words: alone they name nothing ("phía Bắc"); "miền Bắc" is a region (3.3).
COMPASS = frozenset(
    {"bắc", "nam", "đông", "tây", "trung", "đông bắc", "tây bắc", "đông nam", "tây nam"}
)
#: Words that, followed by ":", credit a photo or a story to an outlet ("Ảnh: VOV").
CREDIT_WORDS = frozenset({"ảnh", "nguồn", "video", "clip", "đồ họa", "theo"})
#: One-syllable forms of country names used in pairs ("Việt - Mỹ", "Mỹ - Trung"; 3.5).
SHORT_COUNTRY_FORMS = frozenset(fold(w) for w in (
    "việt", "trung", "mỹ", "nhật", "hàn", "triều", "nga", "pháp", "anh", "đức", "lào", "thái",
    "ấn", "úc", "xô", "miên", "hoa",
))  # fmt: skip
HYPHENS = frozenset({"-", "–", "—"})
#: Initials that stand for a person ("N.K.", "N.T.A"): single capitals joined by dots.
INITIALS = re.compile(r"(?:[A-ZĐ]\.){1,3}[A-ZĐ]?\.?")
#: A model number: letters and digits in one word ("S4", "RS-26", "F-35").
MODEL = re.compile(r"[^\W\d_]-?\d|\d-?[^\W\d_]")
#: A house number before a street name ("236", "12A", "45/7").
HOUSE_NUMBER = re.compile(r"\d{1,4}[A-Za-z]?(?:/\d{1,4}[A-Za-z]?)*")
#: Age-group teams ("U23 Việt Nam", "U-23 VN") are organisations (4.8).
TEAM = re.compile(r"U-?\d{2}")
#: Lowercase syllables (nouns, adjectives) an organisation's name may run through before
#: it ends with a country or province ("Hội Khoa học lịch sử Việt Nam": 2).
MAX_LOWERCASE_IN_NAME = 4
#: Words the tagger may call nouns that never continue a name ("Chiến tranh Lạnh sau khi
#: Mỹ ...").
NOT_IN_NAMES = frozenset({
    "sau", "khi", "trước", "trong", "ngoài", "giữa", "tại", "của", "cho", "với", "từ", "này",
    "đó", "nay", "năm", "ngày", "tháng", "lúc", "người", "phía", "nước", "các", "những", "mọi",
})  # fmt: skip
#: A number this short after an organisation's name is part of it ("Bệnh viện Nhi đồng 1").
MAX_UNIT_NUMBER = 2
#: Words before a name that make it a language or an ethnic group (MISC, not scored).
LANGUAGE_WORDS = frozenset({"tiếng", "chữ", "giọng"})
ETHNIC_NAMES = frozenset({
    "việt", "kinh", "hoa", "do thái", "chăm", "khmer", "h'mông", "mông", "tày", "nùng", "dao",
    "ê đê", "gia rai", "ba na", "mường", "ả rập",
})  # fmt: skip


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    type: str  # PER | LOC | ORG | MISC
    text: str  # text[start:end]
    canonical: str  # the article-level canonical name ("ông Gallant" -> "Yoav Gallant")


@dataclass
class _Span:
    """A typed (or still untyped) stretch of syllables found in one sentence."""

    start: int  # character offsets into the article text
    end: int
    type: str  # PER | LOC | ORG | MISC, or "" while untyped
    folded: tuple[str, ...]  # its syllables, folded
    canonical: str = ""  # from the gazetteer, when it knows the name
    weak: bool = False  # typed by a default, which firmer evidence in the article overrides


_NON_SPACE = re.compile(r"\S+")


class _Syllables:
    """One sentence as syllables: surface, folded form, offsets and the POS of the word."""

    def __init__(self, text: str, sentence: Sentence) -> None:
        self.text = text
        self.surface: list[str] = []
        self.folded: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.pos: list[str] = []
        self.word_start: list[bool] = []  # the syllable opens a word (token)
        for token in sentence.tokens:
            for piece in _NON_SPACE.finditer(text, token.start, token.end):
                self.surface.append(piece.group())
                self.folded.append(fold(piece.group()))
                self.starts.append(piece.start())
                self.ends.append(piece.end())
                self.pos.append(token.pos)
                self.word_start.append(piece.start() == token.start)
        self.n = len(self.surface)
        self.capital = [w[:1].isupper() for w in self.surface]
        self.lowercase = [w[:1].islower() for w in self.surface]
        acronym = [_is_acronym(w) for w in self.surface]
        # a word starts at i (see ``boundary``); one more entry for the sentence end
        self.starts_word = [
            self.word_start[i]
            or (self.capital[i] and i > 0 and self.lowercase[i - 1])
            or acronym[i]
            or (i > 0 and acronym[i - 1])
            for i in range(self.n)
        ] + [True]

    def boundary(self, i: int) -> bool:
        """A word starts (or the sentence ends) at syllable i. A capital after a lowercase
        syllable starts one too: the segmenter sometimes glues them ("áo_CLB")."""
        return self.starts_word[i]

    def match(self, phrases: PhraseSet, i: int) -> int:
        """Longest phrase at i that starts and ends on word boundaries ("yêu cầu" holds no
        "cầu"), or i."""
        if not self.boundary(i):
            return i
        return phrases.match(self.folded, i, self.boundary)

    def before_name(self, i: int) -> bool:
        """A word starts at i, or a capitalised syllable does (inside "Bác_Hồ")."""
        return self.starts_word[i] or self.cap(i)

    def match_cue(self, phrases: PhraseSet, i: int) -> int:
        """Like ``match``, but a cue may also end inside a common-noun word before a
        capital ("Bộ_Tư_pháp"); inside a proper noun it may not ("Đoàn_Văn_Hậu")."""
        if not self.boundary(i):
            return i
        return phrases.match(self.folded, i, self.before_common_name)

    def before_common_name(self, i: int) -> bool:
        """A word starts at i, or a capital inside a common-noun word ("Bộ_Tư_pháp")."""
        return self.starts_word[i] or (self.cap(i) and self.pos[i] != "Np")

    def cap(self, i: int) -> bool:
        return i < self.n and self.capital[i]

    def initial(self, i: int) -> bool:
        return i == 0 or self.surface[i - 1] in OPENERS

    def lower(self, i: int) -> bool:
        return i < self.n and self.lowercase[i]


class _Scanner:
    """Left-to-right pass over one sentence, producing spans (see the module docstring)."""

    def __init__(self, syl: _Syllables) -> None:
        self.g = gazetteer.load()
        self.s = syl
        self.spans: list[_Span] = []
        self.last_end = -1  # syllable index where the last span ended

    # --- small matchers -------------------------------------------------------------

    def role(self, i: int) -> int:
        """End of a title or honorific (with prefixes like "Phó", "nguyên") at i, or i."""
        s, g = self.s, self.g
        k = i
        while (j := g.title_prefixes.match(s.folded, k)) > k:
            k = j
        # a title of two or more syllables is safe to match across a segmentation slip
        # ("Phó_Trưởng khoa")
        j = g.titles.match(s.folded, k)
        if j - k < 2:
            # one-syllable roles must be whole words ("trẻ em" holds no "em"), but may be
            # glued to the name they introduce ("Bác_Hồ")
            if not s.boundary(k):
                return i
            j = max(
                g.titles.match(s.folded, k, s.before_name),
                g.honorifics.match(s.folded, k, s.before_name),
            )
        if j == k or (k > i and not s.boundary(k)):
            return i
        # a capitalised one-syllable "Anh", "Nam", "Đức" mid-sentence is a name unless it is
        # a kinship word and a name follows it ("Bác Hồ")
        one_capital = j - k == 1 and k == i and s.cap(k) and not s.initial(k)
        if one_capital and (
            not s.cap(j)
            or g.lookup(s.surface, s.folded, k)[0] > k
            or (s.folded[k] in g.words and s.folded[k] not in CAPITAL_HONORIFICS)
        ):
            return i  # but "PGS.TS", "HLV" are always written in capitals
        return j

    def dictionary_word(self, i: int, shortest: int = 2) -> int:
        """End of the longest dictionary word (of at least ``shortest`` syllables) at i."""
        s, words = self.s, self.g.words
        for j in range(min(s.n, i + 4), i + shortest - 1, -1):
            if " ".join(s.folded[i:j]) in words:
                return j
        return i

    def name_run(self, i: int) -> int:
        """End of the run of capitalised syllables from i (foreign particles allowed inside)."""
        s = self.s
        k = i
        while k < s.n:
            if s.cap(k):
                if k > i and (
                    self.role(k) > k + 1
                    or (s.folded[k] not in self.g.surnames and self.organisation(k)[1] > k)
                ):
                    break  # "trưởng ban KT7 Công ty AIC": the name stops at the company
                k += 1
            elif s.folded[k] in NAME_PARTICLES and s.cap(k + 1) and k > i:
                k += 1
            else:
                break
        return k

    def loc_cue(self, i: int, titled: bool = False) -> int:
        """End of "tỉnh Bắc Giang" / "quận 12" / "sông Hồng" / "miền Bắc" at i, or i."""
        s, g = self.s, self.g
        if s.folded[i] == "miền" and s.cap(i + 1) and s.folded[i + 1] in COMPASS:
            return i + 2 if not s.cap(i + 2) else i  # "miền Bắc", but "miền Nam Gaza" -> Gaza
        c = s.match_cue(g.loc_cues, i)
        if c == i or c >= s.n or (c - i > 1 and " ".join(s.folded[i - 1 : c]) in g.words):
            return i  # "tàu sân bay" is a ship, not "sân bay"
        if s.surface[c][:1].isdigit() and s.match(g.loc_number_cues, i) > i:
            return c + 1
        if not s.cap(c) or (titled and self.vietnamese_name(c)):
            return i  # "Phó chủ tịch tỉnh Lê Đức Tiến": the province's officer, then a name
        found, entry = g.lookup(s.surface, s.folded, c)
        if entry.source == "country" and s.folded[i] != "cộng":
            return i  # "sân bay Nga" is a Russian airfield: only "Nga" is a name
        end = self.name_run(c)
        if c < found < end and self.vietnamese_name(found):
            return found  # "tỉnh An Giang Hồ Văn Mừng": the chairman's name follows
        return max(end, found)  # the gazetteer may know more: "Bà Rịa - Vũng Tàu"

    # --- organisations --------------------------------------------------------------

    def org_body(self, c: int, capitalised_cue: bool, titled: bool = False) -> tuple[int, bool]:
        """End of an organisation's body after its cue ends at c, and whether it names one.

        The body takes capitalised words, the lowercase words of ``org_words`` ("Cơ quan
        cảnh sát điều tra"), connectors before more of the name ("Ủy ban nhân dân", "Bộ
        Giáo dục và Đào tạo") and ends with a place ("Bộ Ngoại giao Mỹ", "Công an tỉnh
        Bắc Giang"), a title, or anything else.
        """
        s, g = self.s, self.g
        k = end = c
        named = False
        while k < s.n:
            if s.cap(k):
                if named and (self.role(k) > k + 1 or (titled and self.vietnamese_name(k))):
                    break  # "Bộ trưởng Bộ Tài chính Đinh Tiến Dũng": the minister's name
                found, entry = g.lookup(s.surface, s.folded, k)
                if found > k and entry.type == LOC and self.dictionary_word(k) <= found:
                    return found, True  # but "Trung tâm Anh ngữ ..." goes on
                k = max(found, self.dictionary_word(k), g.org_words.match(s.folded, k), k + 1)
                if k < s.n and s.surface[k].isdigit() and len(s.surface[k]) <= MAX_UNIT_NUMBER:
                    k += 1  # "Bệnh viện Nhi đồng 1", "Trường tiểu học Tân Lập 1"
                end, named = k, True
                continue
            place = self.loc_cue(k)
            if place > k:
                return place, True  # "UBND tỉnh Quảng Nam", "Công an TP Hà Nội"
            j = g.org_words.match(s.folded, k)
            if j > k:
                k = j
                if k < s.n and s.surface[k].isdigit() and len(s.surface[k]) <= MAX_UNIT_NUMBER:
                    k += 1  # "Ban Quản lý dự án 85"
                if named or capitalised_cue:  # "trường tiểu học" names nothing yet
                    end, named = k, True
                continue
            if named and (j := self.described_place(k)) > k:
                return j, True  # "Hội Phục hồi chức năng Việt Nam"
            j = g.org_connectors.match(s.folded, k)
            if (
                j > k
                and j < s.n
                and (
                    s.cap(j)
                    or g.org_words.match(s.folded, j) > j
                    or g.org_connectors.match(s.folded, j) > j
                    or self.loc_cue(j) > j
                )
            ):
                if s.folded[k] == "và" and s.match(g.org_cues, j) > j:
                    break  # "Bộ Y tế và Bộ Tài chính": two organisations
                k = j
                continue
            break
        return end, named

    def described_place(self, k: int) -> int:
        """End of a few lowercase nouns and adjectives and then a country or province at
        k, or k: the rest of a name like "Viện Nghiên cứu an toàn đường bộ Malaysia"."""
        s, g = self.s, self.g
        j = k
        while (
            j < s.n
            and j - k < MAX_LOWERCASE_IN_NAME
            and s.lower(j)
            and (s.pos[j] in ("N", "A") or s.folded[j] == "và")
            and s.folded[j] not in NOT_IN_NAMES
        ):
            j += 1
        found, entry = g.lookup(s.surface, s.folded, j)
        if (
            j > k
            and s.folded[j - 1] != "và"
            and found > j
            and entry.source in ("country", "province")
            and self.dictionary_word(j) <= found
        ):  # not "Mỹ phẩm" (cosmetics)
            return found
        return k

    def organisation(self, i: int, titled: bool = False) -> tuple[int, int]:
        """(start, end) of an organisation opened by a cue at i, or (i, i). ``titled``: a
        title came just before, so a person's name may follow the organisation."""
        s, g = self.s, self.g
        if TEAM.fullmatch(s.surface[i]):
            found, entry = g.lookup(s.surface, s.folded, i + 1)
            return (i, found) if found > i + 1 and entry.type == LOC else (i, i)
        c = s.match_cue(g.org_cues, i)
        if c == i:
            return i, i
        cue = " ".join(s.folded[i:c])
        if not s.cap(i) and cue not in g.admin_bodies:
            return i, i  # "chính phủ Mỹ", "quân đội Ukraine": descriptions, not names
        # a capitalised cue opening the sentence may be an ordinary word ("Trường đào tạo
        # trình độ đại học"): then its body needs a capitalised part ("Ban Quản lý" has one)
        capitalised = s.cap(i) and (not s.initial(i) or any(s.capital[i + 1 : c]))
        end, named = self.org_body(c, capitalised, titled)
        if not named:
            return i, i
        descriptor = tuple(s.folded[i:c]) in g.descriptors
        found, entry = g.lookup(s.surface, s.folded, c)
        if found == end and entry.type == LOC and (descriptor or not s.cap(i)):
            return i, i  # "trường Mỹ", "Tạp chí Nhật Bản": described by their country
        if descriptor and self.proper_name(c):
            return c, end  # "hãng Apple", "tập đoàn Samsung": the word stays outside
        return i, end

    def vietnamese_name(self, i: int) -> bool:
        """Does a Vietnamese personal name (surname + 1-3 syllables, all Np) start at i?"""
        s, g = self.s, self.g
        end = self.name_run(i)
        return (
            s.folded[i] in g.surnames
            and 2 <= end - i <= MAX_VIETNAMESE_NAME
            and all(p == "Np" for p in s.pos[i:end])
        )

    def proper_name(self, i: int) -> bool:
        """Is the name at i used on its own (not a field like "Điện lực Việt Nam", nor a
        legal form like "CP Đầu tư Vàng Phú Quý")?"""
        g = self.g
        if g.org_connectors.match(self.s.folded, i) > i:
            return False
        found, _ = g.lookup(self.s.surface, self.s.folded, i)
        return found > i or self.dictionary_word(i) == i

    # --- the pass -------------------------------------------------------------------

    def add(
        self, i: int, j: int, kind: str, entry: Entry | None = None, weak: bool = False
    ) -> None:
        """Record s[i:j] without trailing punctuation ("Nguyễn Văn T." -> "Nguyễn Văn T").

        An organisation or place right after an organisation joins it: sub-units and
        places are part of the name ("Phòng Cảnh sát hình sự Công an TP.HCM", "Quốc hội
        Việt Nam"); but "Chính phủ Mỹ" opening a sentence describes a government.
        """
        s = self.s
        while j > i and not s.surface[j - 1][:1].isalnum():
            j -= 1
        if j <= i:
            return
        end = s.ends[j - 1] - (len(s.surface[j - 1]) - len(s.surface[j - 1].rstrip(".")))
        last = self.spans[-1] if self.spans else None
        if (
            last
            and self.last_end == i
            and kind == LOC
            and last.folded in GOVERNMENT
            and s.initial(i - len(last.folded))
        ):
            self.spans.pop()  # "Chính phủ Mỹ" at the start of a sentence: a description
            last = None
        if last and self.last_end == i and last.type == ORG and kind in (ORG, LOC):
            last.end = end
            last.folded = last.folded + tuple(s.folded[i:j])
            last.canonical = ""
        else:
            canonical = entry.canonical if entry else ""
            self.spans.append(_Span(s.starts[i], end, kind, tuple(s.folded[i:j]), canonical, weak))
        self.last_end = j

    def scan(self) -> list[_Span]:
        s, g = self.s, self.g
        person = False  # a title or honorific was just read (fields, places may follow)
        place = False  # a preposition of place was just read
        org = False  # a descriptor ("hãng", "báo", "Ảnh:") was just read
        i = 0
        starters = _starters()
        while i < s.n:
            if not s.capital[i] and s.folded[i] not in starters:
                person = place = org = False  # most words start nothing: skip them fast
                i += 1
                continue
            found, entry = g.lookup(s.surface, s.folded, i)
            role = self.role(i)
            if role > i and s.match_cue(g.org_cues, i) > role:
                role = i  # "Đại sứ quán Mỹ" is an embassy, not "Đại sứ" + "quán"
            if role > i and found - i < 2:
                person, place, org = True, False, False
                i = role
                continue
            if found > i and (
                self.longer_name(i, found)
                or (entry.source == "district" and (person or self.listed(i, found) == PER))
            ):
                found = i  # a district's bare name is also a given name ("thủ môn Vĩnh Lợi")
            if found == i and (j := self.named_thing(i)) > i:
                self.add(i, j, MISC)  # "Luật Đất đai", "Giải thưởng Hồ Chí Minh"
                person = place = org = False
                i = j
                continue
            start, end = self.organisation(i, person)
            place_end = self.loc_cue(i, person)
            best = max(end, place_end, found)
            if best > i and not (best == found and self.skip_name(i, found)):
                if best == found and found >= max(end, place_end):
                    self.add(i, found, entry.type, entry)
                    org = org and entry.type == LOC  # "tạp chí Nhật Bản Mac Fan"
                elif best == end:
                    self.add(start, end, ORG)
                    org = False
                else:
                    self.add(i, place_end, LOC)
                    org = False
                place = False
                i = best
                continue
            if s.cap(i):
                i = self.name(i, person, place, org)
                place = org = False
                continue
            person = place = org = False
            if s.folded[i] in CREDIT_WORDS and i + 1 < s.n and s.surface[i + 1] == ":":
                org = True  # "Ảnh: VOV", "Nguồn: Reuters"
                i += 2
            elif (j := s.match(g.loc_prepositions, i)) > i:
                place = True
                i = j
            elif (j := s.match(g.descriptors, i)) > i:
                org = True
                i = j
            else:
                i += 1
        return self.spans

    def named_thing(self, i: int) -> int:
        """End of a law, award, event or programme named after a capitalised cue, or i."""
        s = self.s
        c = s.match_cue(self.g.misc_cues, i)
        if c == i or not s.cap(i) or not s.cap(c):
            return i
        return max(self.name_run(c), self.org_body(c, True)[0])

    def longer_name(self, i: int, found: int) -> bool:
        """Is the gazetteer name s[i:found] only the start of a longer name? "Vietnam Idol"
        and "Hanoi FC" go on with a foreign keyword; "Mỹ Tâm" and "Đức Phúc" are a country's
        one syllable followed by Vietnamese ones: a person."""
        s, g = self.s, self.g
        end = self.name_run(i)
        if end == found:
            return False
        if self.foreign_kind(found, end):
            return True
        return (
            found == i + 1
            and (i == 0 or s.folded[i - 1] not in NATIONALITY_WORDS)
            and end <= i + MAX_BARE_NAME
            and g.lookup(s.surface, s.folded, i)[1].type == LOC
            and all(w in g.vietnamese_syllables for w in s.folded[found:end])
            and g.lookup(s.surface, s.folded, found)[0] == found
            and self.dictionary_word(found) == found
        )

    def skip_name(self, i: int, j: int) -> bool:
        """A gazetteer hit that is not an entity here: "tiếng Anh", or an ordinary word
        opening the sentence ("Anh ấy")."""
        s = self.s
        if i > 0 and s.folded[i - 1] in LANGUAGE_WORDS:
            return True
        if not s.initial(i):
            return False
        if j - i == 1:
            return s.pos[i] != "Np" and s.folded[i] in self.g.words
        # opening a sentence, only the later capitals tell a name: "Người lao động" is not
        # the newspaper "Người Lao Động"
        entry = self.g.lookup(s.surface, s.folded, i)[1]
        return any(c and not s.cap(k) for k, c in zip(range(i + 1, j), entry.caps[1:], strict=True))

    def name(self, i: int, person: bool, place: bool, org: bool) -> int:
        """Type the capitalised run at i; returns where scanning resumes."""
        s, g = self.s, self.g
        if (j := s.match(g.not_entities, i)) > i:
            return j
        if s.initial(i) and s.pos[i] != "Np":
            j = self.dictionary_word(i, shortest=1)
            if j > i or s.match(g.sentence_openers, i) > i:
                return max(j, i + 1)  # "Theo", "Cụ thể", "Giá" open the sentence
        if person and s.folded[i] not in g.surnames and (j := self.dictionary_word(i)) > i:
            return j  # "Bộ trưởng Quốc phòng ...": the field of a title
        if person and s.match_cue(g.org_cues, i) > i:
            person = False  # "trưởng phòng Phòng nghiệp vụ": an unfinished organisation
        if s.pos[i] in FUNCTION_TAGS and s.folded[i] in g.words and not s.cap(i + 1):
            return i + 1  # "Tôi", "Chúng tôi" after a missing full stop
        end = self.name_run(i)
        words = s.folded[i:end]
        if (j := self.dictionary_word(i)) > end:
            return j  # "Quân ủy", "Hồi giáo": a capitalised common word, not a name
        if len(words) == 1 and words[0] in COMPASS and not person and not self.paired_country(i):
            return end  # "phía Bắc", but "Mỹ - Trung" is a pair of countries
        if i > 0 and (
            s.folded[i - 1] in LANGUAGE_WORDS
            or (s.folded[i - 1] == "người" and " ".join(words) in ETHNIC_NAMES)
        ):
            return end
        kind, weak = self.kind(i, end, person, place, org)
        self.add(i, end, kind, weak=weak)
        return end

    def listed(self, i: int, end: int) -> str:
        """Type of the span just before s[i:end] when they are items of one list, else "".

        A comma alone may end a clause ("Trước khi sang Việt Nam, Aslan từng..."), so it
        counts only when another joiner follows the item."""
        s = self.s
        gap = s.folded[self.last_end : i]
        if not (self.spans and gap and all(w in LIST_JOINERS for w in gap)):
            return ""
        if gap == [","] and not (end < s.n and s.folded[end] in LIST_JOINERS):
            return ""
        return self.spans[-1].type

    def foreign_kind(self, i: int, end: int) -> str:
        """ORG/LOC/MISC from the last foreign keyword in s[i:end] ("Sky Sport", "BTV Cup")."""
        keywords = self.g.foreign_keywords
        for w in reversed(self.s.folded[i:end]):
            if w in keywords:
                return keywords[w]
        return ""

    def kind(self, i: int, end: int, person: bool, place: bool, org: bool) -> tuple[str, bool]:
        """(PER/LOC/ORG/MISC or "" when unsure, whether that is only a default) for the
        capitalised run s[i:end]."""
        s, g = self.s, self.g
        words = s.folded[i:end]
        vietnamese = all(w in g.vietnamese_syllables or w in g.surnames for w in words)
        if s.starts[i] and s.text[s.starts[i] - 1] == "/":
            return "", False  # "148/2024/NĐ-CP": part of a document number
        if len(words) > 1 and all(_is_acronym(w) for w in s.surface[i:end]):
            # "BTC VALUE" is a firm; "MAI PHƯƠNG" signing an article is a person
            return (PER if vietnamese else ORG), True
        if len(words) == 1 and words[0] in SHORT_COUNTRY_FORMS and self.paired_country(i):
            return LOC, False  # "quan hệ Việt - Mỹ", "Mỹ - Trung"
        if (
            len(words) == 1
            and INITIALS.fullmatch(s.surface[i])
            and not (end < s.n and s.surface[end][:1].isdigit())
        ):  # "P.4" is a ward
            return PER, False  # "N.T.A", "C.T": a person named by initials
        if len(words) == 1 and MODEL.search(words[0]):
            return MISC, False  # "FA-50", "S-400": a model
        if len(words) == 1 and _is_acronym(s.surface[i]):
            if i > 0 and s.surface[i - 1] == "(":
                # "(HCDC)" takes the type of the name it abbreviates; after a description
                # ("hội chứng ruột kích thích (IBS)") it is a term
                if self.last_end == i - 1:
                    return self.spans[-1].type, False
                if s.lower(i - 2):
                    return MISC, False
            if i > 0 and s.folded[i - 1] in g.term_words:
                return MISC, False  # "vi rút RSV", "giáo dục STEM"
            return ORG, True
        if len(words) > 1 and any(MODEL.search(w) for w in words):
            return MISC, False  # "Galaxy S4", "RS-26 Rubezh": products and models
        if len(words) > 1 and not vietnamese and (foreign := self.foreign_kind(i, end)):
            return foreign, False
        if org:
            return ORG, False
        if self.house_number(i - 1) and (
            s.folded[i - 2 : i - 1] in (["số"], [","]) or s.folded[end : end + 1] == [","]
        ):
            return LOC, False  # "236 Bình Lợi, phường 13", "314 Cao Thắng, ...": a street
        if self.listed(i, end) == LOC and self.spans[-1].folded[0] in g.loc_cues.firsts:
            return LOC, False  # "các tuyến đường Quang Trung, Nguyễn Chí Thanh, ..."
        if person:
            return PER, False
        if place:
            return LOC, True  # "ở Đồng Quan": a place even if it starts like a surname
        if words[0] in g.surnames and vietnamese and 2 <= len(words) <= MAX_VIETNAMESE_NAME:
            return PER, False
        if len(words) >= 2 and not any(w in g.vietnamese_syllables for w in words):
            return PER, True  # "Yoav Gallant"
        if self.place_in_brackets(end):
            return LOC, False  # "Mẫu Sơn (Lạng Sơn)", "Dili (Đông Timor)"
        if self.listed(i, end) == LOC:
            return LOC, True  # "Slovakia, Bulgaria, Cyprus", "phường Tân Biên, Tân Hòa"
        if (
            2 <= len(words) <= MAX_BARE_NAME
            and vietnamese
            and not s.initial(i)
            and self.dictionary_word(i) < end
            and all(p == "Np" for p in s.pos[i:end])
        ):
            return PER, True  # "Bằng Kiều", "Tiến Minh": stage names and given names in use
        return "", True

    def paired_country(self, i: int) -> bool:
        """Is the syllable at i joined by a hyphen to a country ("Việt - Mỹ")?"""
        s, g = self.s, self.g
        if i + 2 < s.n and s.surface[i + 1] in HYPHENS:
            found, entry = g.lookup(s.surface, s.folded, i + 2)
            if found > i + 2 and entry.source == "country":
                return True
        last = self.spans[-1] if self.spans else None
        return bool(
            last and self.last_end == i - 1 and s.surface[i - 1] in HYPHENS and last.type == LOC
        )

    def house_number(self, i: int) -> bool:
        return i >= 0 and HOUSE_NUMBER.fullmatch(self.s.surface[i]) is not None

    def place_in_brackets(self, end: int) -> bool:
        s = self.s
        if end + 2 >= s.n or s.surface[end] != "(":
            return False
        found, entry = self.g.lookup(s.surface, s.folded, end + 1)
        return found > end + 1 and entry.type == LOC and found < s.n and s.surface[found] == ")"


@functools.cache
def _starters() -> frozenset[str]:
    """Lowercase syllables that may open a role, cue, name or context phrase."""
    g = gazetteer.load()
    phrase_sets = (
        g.titles,
        g.honorifics,
        g.title_prefixes,
        g.org_cues,
        g.loc_cues,
        g.misc_cues,
        g.loc_prepositions,
        g.descriptors,
        g.loc_number_cues,
    )
    firsts = set().union(*(p.firsts for p in phrase_sets))
    firsts |= set(g.name_lengths) | CREDIT_WORDS | {"miền"}
    return frozenset(firsts)


def _is_acronym(word: str) -> bool:
    """Two or more letters, all capitals ("UBND", "TP.HCM", "F-35" is not: one letter)."""
    if not word[:1].isupper() or (not word[1:2].isupper() and word[1:2] not in ".-&"):
        return False
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


# --- article level ----------------------------------------------------------------------


def _resolve(spans: list[_Span]) -> None:
    """Settle untyped and default-typed runs from firmer evidence in the same article: the
    type the name has elsewhere ("ca sĩ Aslan" makes every "Aslan" a person), or a person
    whose full name ends with it ("Gallant" after "Yoav Gallant")."""
    votes: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    defaults: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for span in spans:
        if span.type:
            (defaults if span.weak else votes)[span.folded][span.type] += 1
    persons = [f for f, v in votes.items() if PER in v and len(f) > 1]
    for span in spans:
        if not span.weak:
            continue
        if span.folded in votes:
            span.type = votes[span.folded].most_common(1)[0][0]
        elif span.type != ORG and any(_short_form(span.folded, p) for p in persons):
            span.type = PER
        elif not span.type and span.folded in defaults:
            span.type = defaults[span.folded].most_common(1)[0][0]


def _short_form(short: tuple[str, ...], full: tuple[str, ...]) -> bool:
    """Can ``short`` refer to the person ``full``? Vietnamese names are shortened to their
    end ("Chính" for "Phạm Minh Chính"); foreign names to either end ("Gallant", "Linda"
    for "Linda McMahon")."""
    if len(short) >= len(full):
        return False
    if full[-len(short) :] == short:
        return True
    g = gazetteer.load()
    foreign = not any(w in g.vietnamese_syllables or w in g.surnames for w in full)
    return foreign and full[: len(short)] == short


def _person_names(people: Iterable[tuple[tuple[str, ...], str]]) -> dict[tuple[str, ...], str]:
    """Each person's folded syllables -> the fullest name it is a short form of.

    ``people`` are (folded syllables, name as written) pairs. A short form shared by
    two different full names ("Austin" for two Austins) stays as written: guessing
    would merge two people.
    """
    full: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for folded, name in people:
        full[folded][name] += 1
    names = {}
    for folded in full:
        longer = [f for f in full if _short_form(folded, f)]
        longest = [f for f in longer if not any(_short_form(f, g) for g in longer)]
        target = longest[0] if len(longest) == 1 else folded
        names[folded] = full[target].most_common(1)[0][0]
    return names


def find_entities(text: str, sentences: Sequence[Sentence]) -> list[Mention]:
    """Entity mentions in ``text`` (offsets into it), canonicalised across the article."""
    spans: list[_Span] = []
    for sentence in sentences:
        spans.extend(_Scanner(_Syllables(text, sentence)).scan())
    _resolve(spans)
    spans = [span for span in spans if span.type]
    persons = _person_names(
        (span.folded, text[span.start : span.end]) for span in spans if span.type == PER
    )
    # other names: one per key, the gazetteer's if it knows one, else the fullest surface
    # ("Ủy ban nhân dân TP Hà Nội" over "UBND TP Hà Nội")
    names: dict[tuple[str, str], tuple[bool, int, str]] = {}
    keys = []
    for span in spans:
        surface = text[span.start : span.end]
        key = (span.type, canonical_key(span.type, span.canonical or surface))
        keys.append(key)
        candidate = (
            bool(span.canonical),
            len(span.canonical or surface),
            span.canonical or surface,
        )
        names[key] = max(names.get(key, candidate), candidate)
    return [
        Mention(
            span.start,
            span.end,
            span.type,
            text[span.start : span.end],
            persons[span.folded] if span.type == PER else names[key][2],
        )
        for span, key in zip(spans, keys, strict=True)
    ]


def canonicalise_persons(mentions: Sequence[Mention]) -> list[Mention]:
    """Carry full person names across texts of one article analysed apart (title, lead,
    body): "Gallant" in a headline becomes "Yoav Gallant" when the body names him in full."""

    def folded(mention: Mention) -> tuple[str, ...]:
        return tuple(fold(word) for word in mention.canonical.split())

    names = _person_names((folded(m), m.canonical) for m in mentions if m.type == PER)
    return [replace(m, canonical=names[folded(m)]) if m.type == PER else m for m in mentions]


# --- cross-article identity -------------------------------------------------------------

_PUNCTUATION = re.compile(r"[^\w\s]|_")


def _key_form(name: str) -> str:
    """Folded, punctuation as spaces, abbreviations spelled out."""
    expansions = gazetteer.load().abbreviations
    words = _PUNCTUATION.sub(" ", fold(name)).split()
    return " ".join(expansions.get(w, w) for w in words)


@functools.cache
def _alias_keys() -> dict[tuple[str, str], str]:
    """(type, key form of an alias) -> key form of its canonical name."""
    return {
        (kind, _key_form(alias)): _key_form(canonical)
        for (kind, alias), canonical in gazetteer.load().aliases.items()
    }


@functools.cache
def _place_keys() -> tuple[dict[tuple[str, ...], tuple[str, ...]], int]:
    """Key-form words of a place alias -> those of its canonical name, and the longest."""
    places = {
        tuple(_key_form(alias).split()): tuple(_key_form(canonical).split())
        for alias, canonical in gazetteer.load().place_aliases.items()
    }
    return places, max(len(k) for k in places)


def _unify_places(words: list[str]) -> list[str]:
    """Places inside a name in their canonical form, without a leading "thành phố"/"tỉnh":
    "Sở Y tế Thành phố Hồ Chí Minh" = "Sở Y tế TPHCM", "UBND tỉnh Hà Nam" = "UBND Hà Nam",
    "Bộ Ngoại giao Hoa Kỳ" = "Bộ Ngoại giao Mỹ"."""
    places, longest = _place_keys()
    out: list[str] = []
    i = 0
    while i < len(words):
        for j in range(min(len(words), i + longest), i, -1):
            canonical = places.get(tuple(words[i:j]))
            if canonical is not None:
                while out[-2:] == ["thành", "phố"] or out[-1:] == ["tỉnh"]:
                    del out[-2 if out[-1] == "phố" else -1 :]
                out.extend(canonical)
                i = j
                break
        else:
            out.append(words[i])
            i += 1
    return out


def canonical_key(type: str, name: str) -> str:
    """The normalised key that identifies an entity across articles.

    NFC, case-folded, one tone-mark style, punctuation and spacing normalised,
    abbreviations spelled out ("UBND" = "Ủy ban nhân dân") and gazetteer aliases unified
    ("Hoa Kỳ" = "Mỹ", "LHQ" = "Liên hợp quốc"). In places and organisations, a known place
    takes its canonical form and loses a leading "thành phố"/"tỉnh": "TP Hà Nội" = "Hà
    Nội", "UBND TP Hà Nội" = "Ủy ban nhân dân Hà Nội", "TPHCM" = "Thành phố Hồ Chí Minh".
    """
    aliases = _alias_keys()
    key = _key_form(name)
    key = aliases.get((type, key), key)
    if type != PER:
        key = " ".join(_unify_places(key.split()))
        key = aliases.get((type, key), key)
    return key
