"""URL canonicalisation: one spelling per page, so the frontier stores each URL once.

Feeds link the same article with different spellings: upper-case hosts, explicit
default ports, ``#comments`` fragments, campaign parameters (``?utm_source=rss``)
and mixed-case percent escapes. :func:`canonicalize` maps them to one string,
following RFC 3986 section 6 (syntax-based normalisation) plus the removal of
known tracking parameters. It never changes what the server is asked for beyond
that: parameter order, ``+`` in queries and trailing slashes are kept, because
servers may treat them as significant.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urljoin, urlsplit

import idna

#: Schemes the crawler fetches. Everything else (``file:``, ``javascript:``,
#: ``data:``, ``mailto:``, ``ftp:`` ...) is not crawlable.
HTTP_SCHEMES = frozenset({"http", "https"})

DEFAULT_PORTS = {"http": 80, "https": 443}

#: Longer URLs (in UTF-8 bytes) are refused. The sitemaps protocol caps URLs
#: below 2,048 characters (https://www.sitemaps.org/protocol.html) and real
#: article URLs are a few hundred; Postgres cannot index a text value over
#: ~2.7 kB, so one absurd link in a feed would otherwise fail the whole feed's
#: transaction.
MAX_URL_LENGTH = 2048


def url_bytes(url: str) -> int:
    """A URL's size as Postgres stores and indexes it, to compare with MAX_URL_LENGTH."""
    return len(url.encode())


#: Query parameters that only identify a campaign or a click, never the page.
#: Dropping them merges the copies of one article that feeds and share buttons
#: produce (newsim's ``dup-items`` fault adds ``utm_*`` to feed links).
#: Sources: Google Analytics campaign parameters (``utm_*``, ``_ga``, ``_gl``),
#: ad-click ids of Google (``gclid``, ``dclid``, ``gbraid``, ``wbraid``),
#: Microsoft (``msclkid``), Facebook (``fbclid``), Yandex (``yclid``), TikTok
#: (``ttclid``), Twitter/X (``twclid``), Instagram (``igshid``), Mailchimp
#: (``mc_cid``, ``mc_eid``) and Zalo, the main Vietnamese messenger (``zarsrc``,
#: ``gidzl``). Generic names such as ``ref``, ``source`` or ``from`` are kept:
#: some sites route on them, so dropping them could merge different pages.
TRACKING_PARAMS = frozenset(
    {
        "_ga",
        "_gl",
        "dclid",
        "fbclid",
        "gbraid",
        "gclid",
        "gidzl",
        "igshid",
        "mc_cid",
        "mc_eid",
        "msclkid",
        "ttclid",
        "twclid",
        "wbraid",
        "yclid",
        "zarsrc",
    }
)

#: Every parameter whose name starts with this is a campaign tag.
TRACKING_PREFIX = "utm_"

# RFC 3986 section 2.3: percent-encoded unreserved characters are decoded.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters that may appear literally in a path or query (RFC 3986 sections 3.3, 3.4);
# anything else (spaces, quotes, non-ASCII) is percent-encoded as UTF-8.
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_HEX = frozenset("0123456789abcdefABCDEF")
_PORT = re.compile(r"\d{1,5}")
_HOST = re.compile(r"[a-z0-9_.-]+")  # after IDNA; "_" occurs in real sub-domains


class UrlError(ValueError):
    """The string is not a crawlable http(s) URL (wrong scheme, no host, bad port)."""


def canonicalize(url: str, base: str | None = None) -> str:
    """The canonical spelling of ``url`` (resolved against ``base`` if relative).

    Lower-cases scheme and host (IDNA-encodes non-ASCII hosts), drops userinfo,
    default ports, fragments and :data:`TRACKING_PARAMS`, removes dot segments,
    normalises percent-encoding and drops an empty query. Raises
    :class:`UrlError` for anything that is not an http(s) URL with a host.
    """
    parts, authority = _http_parts(url, base)
    path = _remove_dot_segments(_normalise_escapes(parts.path, _PATH_SAFE)) or "/"
    query = _strip_tracking(parts.query)
    canonical = f"{parts.scheme.lower()}://{authority}{path}" + (f"?{query}" if query else "")
    if url_bytes(canonical) > MAX_URL_LENGTH:  # escaping raw non-ASCII can triple the length
        raise UrlError(f"URL of {len(canonical)} characters (max {MAX_URL_LENGTH})")
    return canonical


def host_of(url: str) -> str:
    """The host key of an http(s) URL: lower-case host, plus ``:port`` if not the default.

    Politeness and robots.txt are kept per host key, so two servers on one
    machine but different ports are treated as different hosts.
    """
    return _http_parts(url)[1]


def is_http_url(url: str) -> bool:
    """True if ``url`` is an absolute http(s) URL with a host (so it can be crawled)."""
    try:
        host_of(url)
    except UrlError:
        return False
    return True


def _http_parts(url: str, base: str | None = None) -> tuple[SplitResult, str]:
    """The split URL and its normalised authority; UrlError unless http(s) with a host."""
    url = url.strip()
    if url_bytes(url) > MAX_URL_LENGTH:
        raise UrlError(f"URL of {url_bytes(url)} bytes (max {MAX_URL_LENGTH}): {url[:200]!r}")
    try:
        parts = urlsplit(url if base is None else urljoin(base.strip(), url))
    except ValueError as exc:  # e.g. "http://[not-ipv6]/"
        raise UrlError(f"unparseable URL {url[:200]!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise UrlError(f"not an http(s) URL: {url[:200]!r}")
    return parts, _authority(scheme, parts.netloc)


def _authority(scheme: str, netloc: str) -> str:
    hostport = netloc.rpartition("@")[2]  # userinfo is never kept (nor logged)
    if hostport.startswith("["):  # IPv6 literal
        host, _, rest = hostport.partition("]")
        host = host.lower() + "]"
        port = rest[1:] if rest.startswith(":") else rest
        _check_ipv6(host[1:-1], netloc)
    else:
        host, _, port = hostport.partition(":")
        host = _ascii_host(host.rstrip("."))
    if not host:
        raise UrlError(f"URL without a host: {netloc!r}")
    if not host.startswith("[") and not _HOST.fullmatch(host):
        raise UrlError(f"bad host name in {netloc!r}")
    if port and (not _PORT.fullmatch(port) or int(port) > 65535):
        raise UrlError(f"bad port in {netloc!r}")
    if not port or int(port) == DEFAULT_PORTS[scheme]:
        return host
    return f"{host}:{int(port)}"


def _check_ipv6(literal: str, netloc: str) -> None:
    try:
        ipaddress.IPv6Address(literal)
    except ValueError as exc:
        raise UrlError(f"bad IPv6 literal in {netloc!r}") from exc


def _ascii_host(host: str) -> str:
    if host.isascii():
        return host.lower()
    try:
        # UTS 46 mapping first (lower-cases, maps full-width dots), then IDNA 2008.
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UrlError(f"bad international host name {host!r}: {exc}") from exc


def _normalise_escapes(text: str, safe: frozenset[str]) -> str:
    """Upper-case escapes, decode escaped unreserved characters, escape unsafe ones."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%" and i + 2 < len(text) and set(text[i + 1 : i + 3]) <= _HEX:
            decoded = chr(int(text[i + 1 : i + 3], 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + text[i + 1 : i + 3].upper())
            i += 3
            continue
        if char in safe:
            out.append(char)
        else:  # includes a stray "%" not followed by two hex digits
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for absolute paths: ``/a/./b/../c`` becomes ``/a/c``."""
    if "." not in path:
        return path
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")  # "/a/b/.." names the directory "/a/"
    return "/" + "/".join(out)


def _strip_tracking(query: str) -> str:
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        pair = _normalise_escapes(pair, _QUERY_SAFE)
        name = pair.partition("=")[0].lower()
        if name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIX):
            continue
        kept.append(pair)
    return "&".join(kept)
