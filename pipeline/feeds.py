"""Reading RSS/Atom feeds into lists of article links.

feedparser does the parsing because real Vietnamese feeds are often broken
(a browser banner before the XML declaration, an unescaped ``&``, truncation):
its lenient parser recovers the items a strict XML parser would reject, and it
marks such feeds as "bozo" so we can report them. Fetching is not done here;
the crawl hands us the bytes the fetcher got (conditional GET included).
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import feedparser

from pipeline import urls

log = logging.getLogger(__name__)


#: feedparser flags these as "bozo", but the XML itself was fine: a server that
#: sent no or a non-XML Content-Type, or a charset header the document overrides.
BENIGN = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


class FeedError(ValueError):
    """The content is not a feed at all (e.g. an HTML error page)."""


@dataclass(frozen=True)
class FeedItem:
    """One link a feed announces. ``url`` is canonical when it is an http(s) URL."""

    url: str
    title: str | None
    published_at: datetime | None


@dataclass(frozen=True)
class ParsedFeed:
    items: tuple[FeedItem, ...]
    problem: str | None  # why the feed was malformed, when feedparser had to recover


def parse_feed(content: bytes, feed_url: str, content_type: str | None = None) -> ParsedFeed:
    """Items of a feed in document order, de-duplicated by canonical URL."""
    headers = {"content-location": feed_url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(content, response_headers=headers, sanitize_html=False)
    exc = parsed.get("bozo_exception")
    problem = _describe(exc) if parsed.bozo and not isinstance(exc, BENIGN) else None
    if not parsed.entries and not parsed.get("version"):
        raise FeedError(problem or "no RSS or Atom content")
    items: dict[str, FeedItem] = {}
    for entry in parsed.entries:
        link = _entry_link(entry)
        if not link:
            continue
        try:
            url = urls.canonicalize(link, base=feed_url)
        except urls.UrlError:
            url = link  # kept as written: the crawl records it as not crawlable
        items.setdefault(url, FeedItem(url, _clean(entry.get("title")), _published(entry)))
    if problem:
        log.info("feed %s is malformed (%s); recovered %d items", feed_url, problem, len(items))
    return ParsedFeed(items=tuple(items.values()), problem=problem)


def _entry_link(entry: feedparser.FeedParserDict) -> str | None:
    link = (entry.get("link") or "").strip()
    if not link and entry.get("guidislink"):
        link = (entry.get("id") or "").strip()
    return link or None


def _published(entry: feedparser.FeedParserDict) -> datetime | None:
    """feedparser normalises dates to UTC struct_time; keep them timezone-aware."""
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)


def _clean(text: str | None) -> str | None:
    text = " ".join((text or "").split())
    return text or None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "malformed feed"
    return f"{type(exc).__name__}: {exc}"[:300]
