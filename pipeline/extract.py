"""Article extraction: one fetched HTML page in, one ``ExtractedPage`` out.

trafilatura finds the main text. Around that one call this module adds what
trafilatura gets wrong on Vietnamese news pages, using signals that hold across
publishers rather than per-site rules:

* the page is parsed once (lxml) and scanned once; metadata, the headline, the
  byline and the lead are read from that tree, which is then pruned (image
  captions and image tables, layout tables, "Xem thêm" / "Tin liên quan" link
  boxes, hidden duplicates, author lines) and handed to trafilatura's main
  extractor as a tree;
* ``published_at`` comes from JSON-LD / meta tags checked against the visible
  byline ("Thứ sáu, 8/2/2019, 17:08 (GMT+7)"): the byline's clock and offset
  win when the machine-readable value carries a wrong offset;
* the body's lines are cleaned of photo credits, bylines, source and author
  trailers and repeated slides; all text is Unicode NFC;
* listing, home and data pages are recognised (``is_article=False``).

Thresholds were set on ``bench/extract_quality.py`` (saved gold pages) and
``bench/extract_newsim.py`` (simulated sites); re-run both after any change.
Their ``--sweep NAME=V1,V2`` option re-runs with a constant changed: the
figures quoted below come from it. Sizes are counted in characters without
whitespace ("chars" below).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin

from lxml import etree
from lxml.html import HtmlElement
from trafilatura.htmlprocessing import convert_tags, prune_unwanted_nodes, tree_cleaning
from trafilatura.main_extractor import extract_content
from trafilatura.settings import Extractor
from trafilatura.utils import load_html
from trafilatura.xml import xmltotxt
from trafilatura.xpaths import RAW_TREE_PRUNE_XPATH, REMOVE_COMMENTS_AND_LISTS_XPATH

log = logging.getLogger(__name__)

#: Vietnam time: bylines and naive timestamps on the pages vnnews crawls are in it.
VN_TZ = timezone(timedelta(hours=7))

#: One trafilatura configuration for every page: balanced focus, no comments
#: (reader comments are not article text), plain text out.
TRAFILATURA_OPTIONS = Extractor(output_format="python", fast=True, comments=False)

# --- pruning thresholds -------------------------------------------------------

#: A <figure>, a caption-classed block or a <table> holding an image is a
#: caption block when it is at most this long. Captions on the gold pages are
#: 20-210 chars; both benches are flat from 50 to 800, 400 keeps room for
#: two-sentence captions without reaching body-sized blocks.
CAPTION_BLOCK_MAX_CHARS = 400

#: A table cell longer than this is a page column, not data. Both benches are
#: flat from 200 up (their layout tables also hold a headline or a nested table).
LAYOUT_CELL_MIN_CHARS = 800

#: A link box ("Xem thêm", "Tin liên quan", class "relate") is at most this
#: long. newsim VMDS magazine pages below 0.98: 105 at 400, 28 at 800, 0 at 1600
#: and 3200 (its related cards carry summaries).
RELATED_BOX_MAX_CHARS = 1600

#: Share of link text that makes a box a link box; a box the label heads may
#: hold teaser summaries too (newsim's magazine cards: 0.15). newsim VMDS pages
#: below 0.98: 10 at 0.3 (short bodies with a "Xem thêm" line went whole), 0 at
#: 0.5 and 0.7; headed boxes: 0 at 0.05 and 0.1, 85 at 0.2, 154 at 0.3.
RELATED_BOX_MIN_LINK_SHARE = 0.5
RELATED_HEADED_MIN_LINK_SHARE = 0.1

#: A label is a short text ("Xem thêm:", "» Tin liên quan"); a body sentence
#: that happens to start with the same words is longer.
RELATED_LABEL_MAX_CHARS = 40

#: Right-aligned or "author"-classed blocks up to this length are author lines
#: (two names with a role fit; the gold pages are flat from 20 to 160).
AUTHOR_BLOCK_MAX_CHARS = 80

# --- body-line cleaning -------------------------------------------------------

#: Credit-only lines ("Ảnh: Bankrate.") and captions ending in a credit are at
#: most this long; longer lines are body text that mentions a photo.
CREDIT_LINE_MAX_CHARS = 300

#: A trailing line of at most this many words without sentence punctuation is
#: an author/source line ("Võ Hải", "XUÂN LONG", "Giang Huy - Hoàng Phương").
#: The gold pages are flat from 2 to 12 (their author lines also go as
#: right-aligned blocks); 8 covers two full names joined by " - ".
TRAILER_MAX_WORDS = 8

#: Trailing "Theo ..." source and "Bài và ảnh: ..." credit lines are at most this many words.
SOURCE_LINE_MAX_WORDS = 12

#: A line holding a date and time plus at most this many other characters is a
#: byline ("Giải trí 30/10/2013 02:22 GMT+7", "Thứ Tư, 23/10/2013 - 11:10").
BYLINE_LINE_MAX_EXTRA = 30

# --- dates --------------------------------------------------------------------

#: The byline is the date closest to the headline; dates further away than this
#: (in characters of page text) belong to comments or related stories. The gold
#: pages are flat from 100 to 2400 (their bylines sit within ~100 characters).
BYLINE_MAX_DISTANCE = 1200

#: A date labelled "Cập nhật" / "Updated" up to this many characters before it is
#: the update time, not the publication time.
UPDATE_LABEL_REACH = 20
UPDATE_LABEL = re.compile(r"cập nhật|update", re.IGNORECASE)

#: A byline and a machine-readable timestamp agree when their clocks are this close.
CLOCK_TOLERANCE = timedelta(minutes=1)

# --- title and lead -----------------------------------------------------------

#: Headlines have at least this many words; shorter <h1>s are logos and section
#: names ("Thời sự", "Kinh doanh") on listing pages.
TITLE_MIN_WORDS = 5

#: The lead starts within this many characters of page text after the headline
#: (only the byline, author and share buttons sit in between). newsim Tuổi Trẻ
#: magazine pages below 0.98: 47 at 100 (author and time come first, the lead
#: stayed in the body), 0 at 250 and 500; at 500 a related card's summary after
#: a short body passes for the lead (tests/fixtures/pages/magazine_short.html).
LEAD_MAX_DISTANCE = 250

#: Shortest and longest lead accepted (chars).
LEAD_MIN_CHARS = 25
LEAD_MAX_CHARS = 1000

#: A related-story card holds a summary plus at most this much (its headline, a date).
TEASER_CARD_EXTRA_CHARS = 200

#: How many blocks after the headline are searched for an unlabelled lead.
LEAD_SEARCH_BLOCKS = 30

# --- article or not -----------------------------------------------------------

#: A page with less prose than this (characters outside table rows) is not an
#: article but a stub or a data table (a video page's blurb is ~100). newsim
#: VMDS articles lost: 0 at 150, 1 at 250, 5 at 300 (shortest body: 234).
MIN_BODY_CHARS = 150

#: A page whose text is mostly table rows with at most this much prose around
#: them is a data page (price boards, results), not an article with a table.
DATA_PAGE_MAX_PROSE = 400
DATA_PAGE_MIN_TABLE_SHARE = 0.6

#: Link texts with at least this many words are headlines (teasers on listings).
HEADLINE_MIN_WORDS = 5

#: How far before a body line a teaser's headline may end (characters).
TEASER_GAP_CHARS = 300

#: A body made of teasers (a headline link, then its summary) is a listing: at
#: least this many teaser lines holding more than this share of the text, and
#: less than MIN_BODY_CHARS of prose before the first teaser (an article whose
#: related-story cards leak has its own text first). The gold listings score
#: 0.88-1.0; the benches are flat from 0.3 to 0.9 (--sweep LISTING_MAX_TEASER_SHARE).
LISTING_MIN_TEASERS = 2
LISTING_MAX_TEASER_SHARE = 0.5

# --- language -----------------------------------------------------------------

#: Share of Vietnamese-only letters among letters above which text is Vietnamese
#: (Vietnamese prose has ~15-20 %, English 0 %).
VIETNAMESE_MIN_SHARE = 0.03
LANGUAGE_SAMPLE_CHARS = 1000


@dataclass(frozen=True)
class ExtractedPage:
    """What extraction learned about one page; ``body`` is empty when it is not an article."""

    url: str | None
    canonical_url: str | None
    title: str | None
    lead: str | None
    body: str
    author: str | None
    published_at: datetime | None
    language: str | None
    is_article: bool
    reason: str | None  # why the page is not an article (None for articles)


# --- text helpers -------------------------------------------------------------

ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def clean_text(text: str | None) -> str:
    """Collapse whitespace and drop zero-width characters (the input is already NFC)."""
    return " ".join(ZERO_WIDTH.sub("", text or "").split())


def to_nfc(text: str) -> str:
    """NFC, skipping the copy when the text is already composed (the common case)."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def text_of(element: HtmlElement) -> str:
    return clean_text(element.text_content())


def size(text: str) -> int:
    """Characters without whitespace: a size that layout indentation does not inflate."""
    return sum(map(len, text.split()))


def size_of(element: HtmlElement) -> int:
    return size(element.text_content())


def link_share(element: HtmlElement, total: int | None = None) -> float:
    """Share of an element's text (``total`` chars, if known) that sits inside links."""
    total = size_of(element) if total is None else total
    return min(1.0, sum(size_of(a) for a in element.iter("a")) / total) if total else 0.0


def drop(element: HtmlElement) -> None:
    """Remove an element but keep its tail text (which belongs to the parent)."""
    if element.getparent() is not None:
        element.drop_tree()


def inside(element: HtmlElement, root: HtmlElement) -> bool:
    """Still part of ``root``'s tree (not in a subtree dropped since the scan)."""
    return any(ancestor is root for ancestor in element.iterancestors())


# --- one pass over the page ---------------------------------------------------

#: Never text; stripped after the scan so that page-text searches see no code.
STRIPPED_TAGS = ("script", "style", "noscript", "template")

#: Class-name fragments, matched case-sensitively as publishers write them
#: ("Image" is VnExpress's caption paragraph class, as a whole class token).
CAPTION_CLASS = re.compile(r"caption|Caption|legend|(?:^|\s)[Ii]mage(?:\s|$)")
RELATED_CLASS = re.compile(r"relate|Relate|lienquan|lien-quan")
AUTHOR_CLASS = re.compile(r"author|byline|tacgia")
LEAD_CLASS = re.compile(
    r"sapo|Sapo|description|lead|summary|excerpt|intro|txt-head|chapo|standfirst"
)
LEAD_TAGS = frozenset({"p", "div", "h2", "h3", "span", "section", "strong", "b"})

#: Labels of link boxes (related stories, tags) that sit inside or next to the body.
RELATED_LABELS = (
    "Xem thêm",
    "XEM THÊM",
    "Đọc thêm",
    "ĐỌC THÊM",
    "Tin liên quan",
    "TIN LIÊN QUAN",
    "Tin Liên Quan",
    "Bài liên quan",
    "BÀI LIÊN QUAN",
    "Bài viết liên quan",
    "Tin cùng chuyên mục",
    "Cùng chuyên mục",
    "Tin khác",
    "Tin mới",
    "TIN MỚI",
    "Tin nổi bật",
    "TIN NỔI BẬT",
    "Xem nhiều",
    "XEM NHIỀU",
    "Đọc nhiều",
    "ĐỌC NHIỀU",
    "Có thể bạn quan tâm",
    "Từ khóa",
    "Từ khoá",
    "TỪ KHÓA",
    "Tags",
    "Tag:",
    "Chủ đề:",
)
LABEL_START = re.compile(r"^[\W_]*(" + "|".join(map(re.escape, RELATED_LABELS)) + r")")


def is_label(text: str | None) -> bool:
    return (
        bool(text)
        and len(text) <= 4 * RELATED_LABEL_MAX_CHARS
        and LABEL_START.match(text) is not None
        and len(text.strip()) <= RELATED_LABEL_MAX_CHARS
    )


@dataclass
class Scan:
    """The elements the later steps need, collected in one walk over the tree
    (one Python pass is cheaper than a dozen XPath searches)."""

    meta: list[HtmlElement] = field(default_factory=list)
    json_ld: list[str] = field(default_factory=list)
    canonical: str | None = None
    title: str | None = None  # <title>
    hidden: list[HtmlElement] = field(default_factory=list)
    headings: list[HtmlElement] = field(default_factory=list)  # <h1>
    links: list[HtmlElement] = field(default_factory=list)
    captions: list[HtmlElement] = field(default_factory=list)  # figure, figcaption, by class
    tables: list[HtmlElement] = field(default_factory=list)
    related: list[HtmlElement] = field(default_factory=list)  # by class or id
    authors: list[HtmlElement] = field(default_factory=list)  # by class or right alignment
    leads: list[HtmlElement] = field(default_factory=list)  # by class
    labelled: list[HtmlElement] = field(default_factory=list)  # elements holding a box label


def scan(tree: HtmlElement) -> Scan:
    found = Scan()
    for element in tree.iter(etree.Element):
        tag = element.tag
        if tag in STRIPPED_TAGS:
            if tag == "script" and "ld+json" in (element.get("type") or "") and element.text:
                found.json_ld.append(element.text)
            continue
        if tag == "meta":
            if element.get("content") is not None:
                found.meta.append(element)
            continue
        if tag == "link":
            if found.canonical is None and (element.get("rel") or "").lower() == "canonical":
                found.canonical = element.get("href")
            continue
        if tag == "title":
            found.title = found.title or clean_text(element.text_content())
            continue
        style = element.get("style")
        if style:
            compact = style.replace(" ", "").lower()
            if "display:none" in compact or "visibility:hidden" in compact:
                found.hidden.append(element)
                continue
            if "text-align:right" in compact and tag in ("p", "div"):
                found.authors.append(element)
        if element.get("hidden") is not None:
            found.hidden.append(element)
            continue
        if tag == "a":
            found.links.append(element)
        elif tag == "h1":
            found.headings.append(element)
        elif tag in ("figure", "figcaption"):
            found.captions.append(element)
        elif tag == "table":
            found.tables.append(element)
        classes = element.get("class")
        if classes:
            if CAPTION_CLASS.search(classes):
                found.captions.append(element)
            elif RELATED_CLASS.search(classes):
                found.related.append(element)
            elif AUTHOR_CLASS.search(classes):
                found.authors.append(element)
            elif tag in LEAD_TAGS and LEAD_CLASS.search(classes):
                found.leads.append(element)
        elif element.get("align") == "right":
            found.authors.append(element)
        if "relate" in (element.get("id") or ""):
            found.related.append(element)
        if is_label(element.text):
            found.labelled.append(element)
        if is_label(element.tail) and element.getparent() is not None:
            found.labelled.append(element.getparent())
    return found


# --- metadata -----------------------------------------------------------------


@dataclass(frozen=True)
class Metadata:
    """Machine-readable facts from <head>, JSON-LD and microdata."""

    title: str | None
    site_name: str | None
    description: str | None
    published: str | None  # raw timestamp text, parsed by parse_timestamp
    author: str | None  # a person named in JSON-LD
    meta_author: str | None  # <meta name="author">, often the publisher's own name
    canonical: str | None
    lang: str | None


#: JSON-LD types that describe the page's own article.
ARTICLE_TYPES = frozenset(
    {
        "newsarticle",
        "article",
        "reportagenewsarticle",
        "blogposting",
        "analysisnewsarticle",
        "opinionnewsarticle",
        "backgroundnewsarticle",
        "webpage",
        "liveblogposting",
    }
)

#: Meta keys (name, property or itemprop) for the publication time, best first.
META_DATE_KEYS = (
    "article:published_time",
    "og:published_time",
    "datepublished",
    "pubdate",
    "publishdate",
    "publish-date",
    "article:published",
    "dc.date.issued",
    "dc.date",
    "date",
    "datecreated",
)
META_AUTHOR_KEYS = ("author", "article:author", "dc.creator")
JSON_LD_DATE = re.compile(r'"datePublished"\s*:\s*"([^"]+)"')
JSON_LD_HEADLINE = re.compile(r'"headline"\s*:\s*"((?:[^"\\]|\\.)+)"')


def json_ld_objects(scripts: Iterable[str]) -> Iterator[dict]:
    """Every JSON object in the page's JSON-LD, @graph members included."""
    for raw in scripts:
        try:
            data = json.loads(raw)
        except ValueError:
            # Hand-written JSON-LD is often invalid (trailing commas, raw newlines):
            # keep what the two fields we need look like.
            found = {}
            if date := JSON_LD_DATE.search(raw):
                found["datePublished"] = date.group(1)
            if headline := JSON_LD_HEADLINE.search(raw):
                found["headline"] = headline.group(1)
            if found:
                yield found
            continue
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, dict):
                yield item
                if isinstance(item.get("@graph"), list):
                    stack.extend(reversed(item["@graph"]))


def json_ld_type(item: dict) -> set[str]:
    kind = item.get("@type")
    kinds = kind if isinstance(kind, list) else [kind]
    return {k.lower() for k in kinds if isinstance(k, str)}


def person_name(value: object) -> str | None:
    """The people named in a JSON-LD author value (string, object or list of either);
    organisations are skipped: publishers name themselves there."""
    if isinstance(value, list):
        names = [n for n in (person_name(v) for v in value) if n]
        return ", ".join(names) or None
    if isinstance(value, dict):
        if "organization" in json_ld_type(value):
            return None
        value = value.get("name")
    return clean_text(value) or None if isinstance(value, str) else None


def alnum(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


#: First words of publication names ("Báo Tuổi Trẻ", "Tạp chí Tài chính"): not people.
PUBLICATION_WORDS = frozenset({"báo", "tạp", "đài", "kênh", "cổng", "trang", "tin", "thông"})
NAME_WORD = re.compile(r"^[(\[]?[^\W\d_][^\d]*$")


def looks_like_name(text: str) -> bool:
    """'Minh Châu', 'XUÂN LONG', 'Giang Huy - Hoàng Phương': 2-6 capitalised words, no digits,
    not a credit ("Ảnh: ...") nor a publication ("Báo Nhịp Sống")."""
    words = [w for w in text.replace(",", " ").split() if w not in "-–&"]
    return (
        2 <= len(words) <= 6
        and ":" not in text
        and words[0].casefold() not in PUBLICATION_WORDS
        and all(NAME_WORD.match(w) and w[0].isupper() for w in words)
    )


def is_publisher_name(name: str, site_name: str | None, url: str | None) -> bool:
    """'VnExpress', 'cafefdotvn', 'VCCorp.vn': a site, not a person."""
    key = alnum(name)
    if not key or "." in name or "://" in name:
        return True
    sites = [alnum(site_name or ""), alnum((url or "").split("//")[-1].split("/")[0])]
    return any(site and (key in site or site in key) for site in sites)


def read_metadata(tree: HtmlElement, found: Scan, url: str | None) -> Metadata:
    meta: dict[str, str] = {}
    for element in found.meta:
        key = element.get("property") or element.get("name") or element.get("itemprop")
        if key:
            meta.setdefault(key.strip().lower(), element.get("content", ""))
    headline = published = author = None
    for item in json_ld_objects(found.json_ld):
        if item.get("@type") is not None and not json_ld_type(item) & ARTICLE_TYPES:
            continue
        if not headline and isinstance(item.get("headline"), str):
            headline = item["headline"]
        if not published and isinstance(item.get("datePublished"), str):
            published = item["datePublished"]
        author = author or person_name(item.get("author"))
    published = published or next((meta[k] for k in META_DATE_KEYS if meta.get(k)), None)
    site_name = clean_text(meta.get("og:site_name")) or None
    meta_author = next((clean_text(meta[k]) for k in META_AUTHOR_KEYS if meta.get(k)), None)
    if author and is_publisher_name(author, site_name, url):
        author = None
    if meta_author and (
        not looks_like_name(meta_author) or is_publisher_name(meta_author, site_name, url)
    ):
        meta_author = None
    canonical = found.canonical or meta.get("og:url")
    if canonical:
        canonical = urljoin(url, canonical.strip()) if url else canonical.strip()
    lang = tree.get("lang") or meta.get("content-language")
    return Metadata(
        title=clean_text(meta.get("og:title") or meta.get("twitter:title") or headline) or None,
        site_name=site_name,
        description=clean_text(meta.get("description") or meta.get("og:description")) or None,
        published=published,
        author=clean_text(author) or None,
        meta_author=meta_author,
        canonical=canonical or None,
        lang=lang.strip().lower() if lang else None,
    )


# --- title --------------------------------------------------------------------

#: Separators between a headline and the site name in <title> / og:title.
TITLE_SUFFIX = re.compile(r"\s+[-|–—:]+\s+(?=[^-|–—]*$)")


def strip_site_name(title: str, site_name: str | None) -> str:
    """'Headline - Section - Site' -> 'Headline', removing short suffixes one at a time."""
    while (match := TITLE_SUFFIX.search(title)) is not None:
        head, tail = title[: match.start()], title[match.end() :]
        if (
            not head
            or len(tail.split()) > 5
            and not (site_name and site_name.casefold() in tail.casefold())
        ):
            break
        title = head
    return title


@dataclass(frozen=True)
class Title:
    text: str | None
    element: HtmlElement | None  # the <h1> showing it
    confirmed: bool  # the <h1> agrees with <title>/og:title: the page is about one story


def find_title(headings: list[HtmlElement], meta: Metadata, page_title: str | None) -> Title:
    """The headline.

    The visible <h1> wins when the machine-readable title contains it (that
    drops site names and keeps the editor's wording); a lone, sentence-like <h1>
    wins too; otherwise the <title>/og:title without its site-name suffix.
    """
    titles = [alnum(t) for t in (meta.title, page_title) if t]
    candidates = [
        (h, text) for h in headings if len((text := text_of(h)).split()) >= TITLE_MIN_WORDS
    ]
    for heading, text in candidates:
        if any(alnum(text) in t for t in titles):  # letters and digits only: quotes vary
            return Title(text, heading, True)
    if len(candidates) == 1:
        return Title(candidates[0][1], candidates[0][0], False)
    if meta.title or page_title:
        return Title(strip_site_name(meta.title or page_title, meta.site_name), None, False)
    return Title(None, None, False)


# --- dates --------------------------------------------------------------------

_DATE = r"(?P<d>\d{1,2})\s*[/.-]\s*(?P<m>\d{1,2})\s*[/.-]\s*(?P<y>(?:19|20)\d\d)"
_TIME = (
    r"(?P<H>[012]?\d)\s*[:hg]\s*(?P<M>[0-5]\d)(?:\s*:\s*(?P<S>[0-5]\d))?"
    r"(?:\s*(?P<ap>[AaPp][Mm]))?"
)
_ZONE = r"(?:\s*\(?\s*(?:GMT|UTC)\s*(?P<z>[+-]\s*\d{1,2}(?::?\d\d)?)\s*\)?)?"
_SEP = r"[\s,|–—-]{0,6}(?:(?:lúc|ngày)\s*)?"
#: "Thứ sáu, 8/2/2019, 17:08 (GMT+7)", "23/03/2015 08:06 GMT+7", "20/05/2016 - 11:03",
#: and time-first "Thứ Hai, 07:00, 02/12/2024".
BYLINE_PATTERNS = (
    re.compile(_DATE + _SEP + _TIME + _ZONE),
    re.compile(_TIME + _ZONE + _SEP + _DATE + _ZONE.replace("?P<z>", "?P<z2>")),
)


@dataclass(frozen=True)
class Byline:
    """A visible date and time, as the page shows it."""

    local: datetime  # naive wall-clock time
    offset: timezone | None  # the "GMT+7" the page printed, if any
    start: int
    end: int
    updated: bool = False  # labelled as the update time ("Cập nhật: ...")


def parse_offset(text: str | None) -> timezone | None:
    if not text:
        return None
    text = text.replace(" ", "")
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (int(digits[:-2]), int(digits[-2:])) if len(digits) > 2 else (int(digits), 0)
    if hours > 14 or minutes > 59:
        return None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def find_bylines(text: str) -> list[Byline]:
    found = []
    for pattern in BYLINE_PATTERNS:
        for match in pattern.finditer(text):
            g = match.groupdict()
            hour = int(g["H"])
            if g["ap"]:
                hour = hour % 12 + (12 if g["ap"].lower() == "pm" else 0)
            try:
                local = datetime(
                    int(g["y"]), int(g["m"]), int(g["d"]), hour, int(g["M"]), int(g["S"] or 0)
                )
            except ValueError:
                continue
            zone = parse_offset(g.get("z") or g.get("z2"))
            label = text[max(0, match.start() - UPDATE_LABEL_REACH) : match.start()]
            found.append(
                Byline(
                    local, zone, match.start(), match.end(), UPDATE_LABEL.search(label) is not None
                )
            )
    return found


def nearest_byline(text: str, anchor: int | None) -> Byline | None:
    """The date and time nearest to the headline (the first one without a headline);
    a publication time beats an update time."""
    start = 0 if anchor is None else max(0, anchor - BYLINE_MAX_DISTANCE)
    end = len(text) if anchor is None else anchor + BYLINE_MAX_DISTANCE
    bylines = find_bylines(text[start:end])
    if not bylines:
        return None
    target = 0 if anchor is None else anchor - start
    return min(bylines, key=lambda b: (b.updated, abs(b.start - target)))


ISO_BASIC_OFFSET = re.compile(r"([+-]\d\d)(\d\d)$")


def parse_timestamp(text: str | None) -> datetime | None:
    """An ISO-8601-ish timestamp as found in meta tags; naive if it has no offset."""
    if not text:
        return None
    text = ISO_BASIC_OFFSET.sub(r"\1:\2", text.strip().replace("Z", "+00:00").replace("/", "-"))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    bylines = find_bylines(text)
    return bylines[0].local.replace(tzinfo=bylines[0].offset) if bylines else None


def decide_published(machine: datetime | None, byline: Byline | None) -> datetime | None:
    """Combine the machine-readable time with the visible byline.

    Publishers print the byline in Vietnam time and sometimes label the same
    clock time with a wrong offset in JSON-LD (VnExpress 2019: "+08:00"), so when
    the clocks agree the byline's offset wins; a naive time is Vietnam time.
    """
    if byline is None:
        if machine is None:
            return None
        return machine if machine.tzinfo else machine.replace(tzinfo=VN_TZ)
    zone = byline.offset or VN_TZ
    if machine is None:
        return byline.local.replace(tzinfo=zone)
    if byline.updated:
        return machine if machine.tzinfo else machine.replace(tzinfo=zone)
    stated = machine.replace(tzinfo=None)
    if abs(stated - byline.local) <= CLOCK_TOLERANCE:
        return stated.replace(tzinfo=zone)
    if (
        machine.tzinfo
        and abs(machine.astimezone(zone).replace(tzinfo=None) - byline.local) <= CLOCK_TOLERANCE
    ):
        return machine.astimezone(zone)
    # They disagree: the machine value is often the creation or update time,
    # the byline is what readers (and the gold) see as the publication time.
    return byline.local.replace(tzinfo=zone)


# --- lead ---------------------------------------------------------------------

BLOCK_TAGS = frozenset({"p", "div", "h2", "strong", "b"})


def following_blocks(element: HtmlElement, limit: int) -> Iterator[HtmlElement]:
    """Block elements after ``element`` in document order (not inside it), at most ``limit``."""
    count = 0
    node = element
    while node is not None and count < limit:
        for sibling in node.itersiblings():
            for block in sibling.iter(*BLOCK_TAGS):
                yield block
                count += 1
                if count >= limit:
                    return
        node = node.getparent()


def lead_text(element: HtmlElement) -> str:
    """The lead's text; a leading location stamp span ("Hà Giang") gets its dash back."""
    first = element[0] if len(element) else None
    if (
        first is not None
        and not (element.text or "").strip()
        and first.tag == "span"
        and "location" in (first.get("class") or "")
    ):
        rest = (first.tail or "") + "".join(
            child.text_content() + (child.tail or "") for child in element[1:]
        )
        return clean_text(f"{text_of(first)} - {rest}")
    return text_of(element)


def is_bold(element: HtmlElement, text_size: int) -> bool:
    return sum(size_of(b) for b in element.iter("strong", "b")) >= text_size


def in_body_run(element: HtmlElement) -> bool:
    """Followed by sibling paragraphs: one of the body's paragraphs, not a sapo."""
    return sum(1 for sibling in element.itersiblings("p") if size_of(sibling) >= 80) >= 2


def is_teaser_summary(element: HtmlElement, title: str | None) -> bool:
    """A summary in a small box with another story's headline link (a related-story card)."""
    parent = element.getparent()
    if parent is None or size_of(parent) > size_of(element) + TEASER_CARD_EXTRA_CHARS:
        return False
    for a in parent.iter("a"):
        text = text_of(a)
        if (
            len(text.split()) >= HEADLINE_MIN_WORDS
            and text != title
            and not any(ancestor is element for ancestor in a.iterancestors())
        ):
            return True
    return False


def find_lead(
    candidates: list[HtmlElement], page_text: str, anchor: int | None, title: Title, meta: Metadata
) -> HtmlElement | None:
    """The sapo: a lead-classed block just after the headline, else the first
    block after the headline when it is bold or repeats the meta description."""
    if anchor is None:
        return None  # without the headline's place, a "description" may be any teaser's
    for element in candidates:
        text = element.text_content()
        if not LEAD_MIN_CHARS <= size(text) <= LEAD_MAX_CHARS:
            continue
        if page_text.find(text, anchor, anchor + LEAD_MAX_DISTANCE + len(text)) < 0:
            continue
        if link_share(element) <= 0.5 and not is_teaser_summary(element, title.text):
            return element
    if title.element is None:
        return None
    wanted = (meta.description or "").casefold()
    for element in following_blocks(title.element, LEAD_SEARCH_BLOCKS):
        raw = element.text_content()
        text_size = size(raw)
        if not LEAD_MIN_CHARS <= text_size <= LEAD_MAX_CHARS:
            continue
        if element.tag in ("p", "div", "h2") and is_bold(element, text_size):
            return element
        folded = clean_text(raw).casefold()
        if (
            len(wanted) >= LEAD_MIN_CHARS
            and not in_body_run(element)
            and (
                folded == wanted
                or wanted.startswith(folded)
                or (wanted.endswith("...") and folded.startswith(wanted[:-3]))
            )
        ):
            return element
        return None
    return None


# --- pruning ------------------------------------------------------------------


def prune_captions(found: Scan) -> None:
    """Figures, captions and image tables (an image and a short text: a caption)."""
    for element in found.captions:
        if size_of(element) <= CAPTION_BLOCK_MAX_CHARS:
            drop(element)
    for table in found.tables:
        if (
            table.tag == "table"
            and table.getparent() is not None
            and table.find(".//img") is not None
            and size_of(table) <= CAPTION_BLOCK_MAX_CHARS
        ):
            drop(table)


def is_layout_table(table: HtmlElement) -> bool:
    """Page structure (a nested table, a headline, a form, a long cell) or a one-cell box."""
    if any(True for _ in table.iterdescendants("table", "h1", "h2", "form")):
        return True
    cells = list(table.iter("td", "th"))
    return len(cells) == 1 or any(size_of(cell) > LAYOUT_CELL_MIN_CHARS for cell in cells)


def unwrap_layout_tables(found: Scan) -> None:
    """Turn layout tables into plain blocks so trafilatura reads them as text:
    left as tables, they come out as "| ... |" rows, paragraphs reordered."""
    for table in found.tables:
        if table.getparent() is None or table.tag != "table" or not is_layout_table(table):
            continue
        for row in table.xpath("./tr | ./*/tr"):
            for cell in row:
                if cell.tag in ("td", "th"):
                    cell.tag = "div"
            row.tag = "div"
        for group in table:
            if group.tag in ("tbody", "thead", "tfoot"):
                group.tag = "div"
        table.tag = "div"


def heads(node: HtmlElement, parent: HtmlElement) -> bool:
    """True when no text comes before ``node`` inside ``parent`` (it labels the parent)."""
    if (parent.text or "").strip():
        return False
    return not any(
        (sibling.tail or "").strip() or size_of(sibling)
        for sibling in node.itersiblings(preceding=True)
    )


def prune_link_boxes(found: Scan, body: HtmlElement) -> None:
    """Remove related-story and tag boxes: link-heavy blocks classed "related",
    and boxes announced by a label ("Xem thêm:", "Tin liên quan", "Từ khóa").

    A labelled box is the largest ancestor of the label, up to
    RELATED_BOX_MAX_CHARS, that is mostly links, or that the label heads and
    that holds a fair share of links.
    """
    for box in found.related:
        if (
            box.getparent() is not None
            and size_of(box) <= RELATED_BOX_MAX_CHARS
            and link_share(box) >= RELATED_BOX_MIN_LINK_SHARE
        ):
            drop(box)
    for node in found.labelled:
        if not inside(node, body):
            continue
        while (parent := node.getparent()) is not None and parent is not body:
            parent_size = size_of(parent)
            if parent_size > RELATED_BOX_MAX_CHARS:
                break
            minimum = (
                RELATED_HEADED_MIN_LINK_SHARE if heads(node, parent) else RELATED_BOX_MIN_LINK_SHARE
            )
            if link_share(parent, parent_size) < minimum:
                break
            node = parent
        if size_of(node) <= RELATED_BOX_MAX_CHARS:
            drop(node)


def prune_authors(found: Scan) -> list[str]:
    """Remove short right-aligned / author-classed blocks; return their texts."""
    names = []
    for element in found.authors:
        if element.getparent() is not None and size_of(element) <= AUTHOR_BLOCK_MAX_CHARS:
            if text := text_of(element):
                names.append(text)
            drop(element)
    return names


# --- body lines ---------------------------------------------------------------

CREDIT_START = re.compile(
    r"^[(\[]?\s*(Ảnh|Video|Clip|Đồ họa|Đồ hoạ|Infographic|Nguồn ảnh|Ảnh minh họa|Ảnh minh hoạ"
    r"|Photo)\s*:",
    re.IGNORECASE,
)
CREDIT_END = re.compile(
    r"[.\s(\[-](Ảnh|Video|Clip|Đồ họa|Đồ hoạ|Nguồn|Photo)\s*:\s*[^:]{1,60}$"
    r"|\(\s*Ảnh minh h(ọa|oạ)\s*\)\.?$",
    re.IGNORECASE,
)
SOURCE_TRAILER = re.compile(r"^[(\[]?\s*(Theo|Nguồn|Nguồn tin|Source)\b", re.IGNORECASE)
#: Credit lines that name the reporters: "Bài và ảnh: Minh Anh", "Nhóm PV", "Thực hiện: ...".
CREDIT_TRAILER = re.compile(
    r"^(Bài(\s*(và|,)\s*(ảnh|clip|video))?\s*:|Bài, ảnh|Tin, ảnh|Nhóm (PV|phóng viên)|PV\b"
    r"|Thực hiện\s*:)",
    re.IGNORECASE,
)
PARENTHETICAL_END = re.compile(r"\s*\([^()]*\)$")
SENTENCE_END = re.compile(r"[.!?…:;\"”]$")


def is_credit_line(line: str) -> bool:
    return len(line) <= CREDIT_LINE_MAX_CHARS and bool(
        CREDIT_START.match(line) or CREDIT_END.search(line)
    )


def is_byline(line: str) -> bool:
    return len(line) <= 80 and any(
        len(line) - (b.end - b.start) <= BYLINE_LINE_MAX_EXTRA for b in find_bylines(line)
    )


def is_trailer_line(line: str, authors: Iterable[str]) -> bool:
    """An author or source line at the end of the body."""
    folded = line.casefold().strip("()[]. ")
    if any(folded == a.casefold().strip("()[]. ") for a in authors):
        return True
    if (SOURCE_TRAILER.match(line) or CREDIT_TRAILER.match(line)) and len(
        line.split()
    ) <= SOURCE_LINE_MAX_WORDS:
        return True
    # A name, maybe with a note: "Minh Anh (tổng hợp)", "XUÂN LONG", "Giang Huy - Hoàng Phương".
    name = PARENTHETICAL_END.sub("", line)
    words = name.split()
    if not words or len(words) > TRAILER_MAX_WORDS or SENTENCE_END.search(name):
        return False
    return all(w[:1].isupper() or not w[:1].isalpha() for w in words)


TABLE_RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def table_cells(line: str) -> str:
    """'| Mẫu | Pin |' -> 'Mẫu<TAB>Pin': the cells' words without pipe tokens."""
    return "\t".join(c.strip() for c in line.strip("|").split("|") if c.strip())


def clean_body(
    text: str, title: str | None, lead: str | None, authors: list[str]
) -> tuple[list[str], list[str]]:
    """Drop captions, bylines, duplicates, title/lead repeats and trailers from the
    extracted text; returns the body lines and the trailer lines removed from its end."""
    skip = {s.casefold() for s in (title, lead) if s}
    seen: set[str] = set()
    lines = []
    for raw in text.split("\n"):
        line = clean_text(raw)
        key = line.casefold()
        if (
            not line
            or key in skip
            or key in seen
            or is_credit_line(line)
            or is_byline(line)
            or TABLE_RULE.match(line)
        ):
            continue
        seen.add(key)
        lines.append(line)
    trailers = []
    while lines and is_trailer_line(lines[-1], authors):
        trailers.append(lines.pop())
    return lines, trailers


# --- article or not -----------------------------------------------------------


@dataclass(frozen=True)
class Headlines:
    """Texts of links that look like headlines, keyed by their first and last words
    so that a body line is checked in constant time."""

    by_first: dict[str, list[str]]
    by_last: dict[str, list[str]]

    @classmethod
    def of(cls, links: list[HtmlElement], title: str | None) -> Headlines:
        own = (title or "").casefold()
        by_first: dict[str, list[str]] = {}
        by_last: dict[str, list[str]] = {}
        for a in links:
            text = text_of(a).casefold()
            words = text.split(" ")
            if len(words) >= HEADLINE_MIN_WORDS and text != own:
                by_first.setdefault(" ".join(words[:HEADLINE_MIN_WORDS]), []).append(text)
                by_last.setdefault(" ".join(words[-HEADLINE_MIN_WORDS:]), []).append(text)
        return cls(by_first, by_last)

    def starts(self, text: str) -> bool:
        key = " ".join(text.split(" ", HEADLINE_MIN_WORDS)[:HEADLINE_MIN_WORDS])
        return any(text.startswith(h) for h in self.by_first.get(key, ()))

    def ends(self, text: str) -> bool:
        key = " ".join(text.rsplit(" ", HEADLINE_MIN_WORDS)[-HEADLINE_MIN_WORDS:])
        return any(text.endswith(h) for h in self.by_last.get(key, ()))


def is_teaser(line: str, page_text: str, headlines: Headlines) -> bool:
    """A line that starts with, or directly follows, a headline link: a teaser.
    ``page_text`` is whitespace-normalised and case-folded."""
    folded = line.removeprefix("- ").casefold()
    if headlines.starts(folded):
        return True
    position = page_text.find(folded[:80])
    if position <= 0:
        return False
    return headlines.ends(page_text[max(0, position - TEASER_GAP_CHARS) : position].strip())


def judge(
    lines: list[str],
    page_text: str,
    headlines: Headlines,
    title: Title,
    published_at: datetime | None,
) -> str | None:
    """Why the page is not an article, or None if it is one."""
    if not title.confirmed and published_at is None:
        return "no headline or date"
    total = sum(map(len, lines))
    prose = sum(len(line) for line in lines if not line.startswith("|"))
    if prose < MIN_BODY_CHARS:
        return "data table" if total >= MIN_BODY_CHARS else "too little text"
    if prose < DATA_PAGE_MAX_PROSE and total - prose > DATA_PAGE_MIN_TABLE_SHARE * total:
        return "data table"
    folded = clean_text(page_text).casefold()
    teasers = teaser_chars = other_chars = 0
    for line in lines:  # stop as soon as the page cannot be a listing
        if is_teaser(line, folded, headlines):
            if not teasers and other_chars >= MIN_BODY_CHARS:
                return None  # prose first, then teasers: an article whose related box leaked
            teasers += 1
            teaser_chars += len(line)
        else:
            other_chars += len(line)
            if other_chars >= (1 - LISTING_MAX_TEASER_SHARE) * total:
                return None
    if teasers >= LISTING_MIN_TEASERS and teaser_chars > LISTING_MAX_TEASER_SHARE * total:
        return "listing of links"
    return None


# --- language -----------------------------------------------------------------

VIETNAMESE_LETTERS = re.compile("[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]+")
NOT_LETTERS = re.compile(r"[\W\d_]+")


def detect_language(text: str, declared: str | None) -> str | None:
    """'vi' when the text uses Vietnamese letters, else the page's declared language
    (which Vietnamese pages often get wrong: Tuổi Trẻ 2015 declares "en")."""
    sample = text[:LANGUAGE_SAMPLE_CHARS].lower()
    letters = len(NOT_LETTERS.sub("", sample))
    vietnamese = len(sample) - len(VIETNAMESE_LETTERS.sub("", sample))
    if letters and vietnamese / letters >= VIETNAMESE_MIN_SHARE:
        return "vi"
    return declared.split("-")[0].split("_")[0] or None if declared else None


# --- the stage ----------------------------------------------------------------


def main_text(tree: HtmlElement, url: str | None) -> str:
    """trafilatura's main-content extractor on the pruned tree, as plain text.

    These are the steps ``trafilatura.bare_extraction`` runs in fast mode with
    comments off, without its rescues for short results: the baseline page dump
    (under 250 characters) and the recall retry (under a fifth of the page
    text). Short news items are common and the pruned tree needs no rescue; the
    rescues glued navigation, kicker and byline into newsim's short articles
    (bench/extract_newsim.py, portal template: precision 0.87 with them).
    """
    tree = prune_unwanted_nodes(tree, RAW_TREE_PRUNE_XPATH + REMOVE_COMMENTS_AND_LISTS_XPATH)
    cleaned = convert_tags(tree_cleaning(tree, TRAFILATURA_OPTIONS), TRAFILATURA_OPTIONS, url)
    body, _ = extract_content(cleaned, TRAFILATURA_OPTIONS)
    return xmltotxt(body, include_formatting=False)


def extract(html: str, url: str | None = None) -> ExtractedPage:
    """Extract one page. Never raises on bad HTML: such pages come back as non-articles."""
    tree = load_html(to_nfc(html)) if html else None
    body = tree.find("body") if tree is not None else None
    if body is None:
        return ExtractedPage(url, url, None, None, "", None, None, None, False, "unparseable HTML")
    found = scan(tree)
    meta = read_metadata(tree, found, url)
    etree.strip_elements(tree, *STRIPPED_TAGS, with_tail=False)
    for element in found.hidden:
        drop(element)
    unwrap_layout_tables(found)  # before the headline and image tables that mark them go

    title = find_title([h for h in found.headings if inside(h, body)], meta, found.title)
    page_text = body.text_content()
    headline = title.element.text_content() if title.element is not None else title.text
    anchor = page_text.find(headline) if headline else -1
    anchor = None if anchor < 0 else anchor
    published_at = decide_published(
        parse_timestamp(meta.published), nearest_byline(page_text, anchor)
    )
    lead_element = find_lead(
        [e for e in found.leads if inside(e, body)], page_text, anchor, title, meta
    )
    lead = lead_text(lead_element) if lead_element is not None else None
    headlines = Headlines.of(found.links, title.text)

    for element in (title.element, lead_element):
        if element is not None:
            drop(element)
    prune_captions(found)
    prune_link_boxes(found, body)
    shown = prune_authors(found)
    authors = [a for a in (meta.author, meta.meta_author) if a] + shown

    lines, trailers = clean_body(main_text(tree, url), title.text, lead, authors)
    reason = judge(lines, page_text, headlines, title, published_at)
    if reason is not None:
        log.debug("not an article (%s): %s", reason, url)
    names = [n for n in (*trailers, *shown) if looks_like_name(n)]
    text = (
        ""
        if reason is not None
        else "\n".join(table_cells(line) if line.startswith("|") else line for line in lines)
    )
    return ExtractedPage(
        url=url,
        canonical_url=meta.canonical or url,
        title=title.text,
        lead=lead,
        body=text,
        author=meta.author or (names[0] if names else meta.meta_author),
        published_at=published_at,
        language=detect_language(text or lead or title.text or "", meta.lang),
        is_article=reason is None,
        reason=reason,
    )
