"""The one HTTP client: SSRF guard, robots.txt, politeness, retries, size and time caps, charsets.

One :class:`Fetcher` owns one httpx transport (keep-alive, connection limits),
the robots.txt cache, the per-host schedule and the address guard; the crawl
asks it for pages and feeds from several threads at once. Every failure is a
:class:`FetchError` whose ``reason`` is a short stable code (see
:data:`REASONS`) that the crawl stores in the frontier and counts in its
summary.

Safety: redirects are followed here, one hop at a time, and every TCP
connection goes through :class:`GuardedTransport`, which resolves the host
itself and connects only to addresses that passed :func:`is_public_address`
(or to hosts in ``allow_hosts``). A redirect to ``http://169.254.169.254/``
or a DNS answer that changed to ``10.0.0.1`` after an earlier check therefore
never leaves the machine.
"""

from __future__ import annotations

import codecs
import email.utils
import ipaddress
import logging
import random
import re
import socket
import ssl
import threading
import time
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import httpcore
import httpx
from protego import Protego

from pipeline.urls import HTTP_SCHEMES, UrlError, host_of

log = logging.getLogger(__name__)

# --- tunables (FetchSettings defaults) -------------------------------------------

#: Identifies the bot and where to read about it, as robots.txt authors expect.
USER_AGENT = "vnnews/0.1 (+https://github.com/vnnews/vnnews)"
#: TCP + TLS set-up. Healthy hosts connect in well under a second; 10 s tolerates
#: a congested link without tying a worker up for long.
CONNECT_TIMEOUT = 10.0
#: Longest silence between two reads. newsim's ``slow`` fault answers after 2 s;
#: real news CDNs answer in under 1 s. 20 s only trips on a stuck server.
READ_TIMEOUT = 20.0
#: Ceiling for one request, body included (checked while streaming), so a
#: server that drips a byte every few seconds cannot hold a worker. A worker is
#: held at most DEADLINE + READ_TIMEOUT. Article pages are < 1 MB (the gold pages
#: in ../shared/data/pages are 60-400 KB), which takes seconds even on slow links.
DEADLINE = 60.0
#: Body cap (after decompression). Real article pages are < 1 MB; 10 MB leaves
#: room for inline images in data: URLs and stops newsim's 50 MB ``oversize`` page.
MAX_BYTES = 10 * 1024 * 1024
#: Redirect hops per fetch; newsim's ``redirect`` fault uses 3, real sites 1-2.
#: RFC 9309 section 2.3.1.2 asks robots.txt fetchers to follow at least five.
MAX_REDIRECTS = 5
#: Minimum gap between two requests to one host (end of one to start of the
#: next), when robots.txt asks for less or nothing. One request per second per
#: host is the common courtesy figure and newsim's default Crawl-delay.
MIN_HOST_INTERVAL = 1.0
#: A robots.txt Crawl-delay above this is clamped (and logged): a host asking
#: for minutes between requests would starve the crawl of its newest articles.
MAX_CRAWL_DELAY = 30.0
#: In-process retries of a transient failure (timeouts, resets, 429, 5xx);
#: newsim's ``503`` fault sends bursts of 3 failures, which 3 retries ride out.
RETRIES = 3
#: Exponential backoff: attempt n waits between half and all of
#: min(BACKOFF_MAX, BACKOFF_BASE * 2**n) ("equal jitter", so that threads that
#: failed together do not come back together).
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
#: A Retry-After up to this long is waited out in-process; a longer one is
#: raised (retryable, with ``retry_after``) so the crawl schedules the URL later.
#: newsim's ``429`` fault asks for 5 s.
MAX_RETRY_AFTER = 60.0
#: How long a fetched robots.txt is trusted. Google caches it for up to 24 hours
#: (https://developers.google.com/search/docs/crawling-indexing/robots/robots_txt).
ROBOTS_TTL = 24 * 3600.0
#: After a 5xx / 429 / network failure on robots.txt the host is treated as
#: fully disallowed (RFC 9309 section 2.3.1.4) and robots.txt is asked for again
#: after this long, about one crawl cycle.
ROBOTS_RETRY = 15 * 60.0
#: Connection-pool size: the crawl runs a few worker threads (one request per
#: host at a time), so a few dozen sockets are plenty.
MAX_CONNECTIONS = 32
MAX_KEEPALIVE = 16
#: Idle keep-alive connections are dropped after this long; a crawl pass hits a
#: host every MIN_HOST_INTERVAL..MAX_CRAWL_DELAY seconds, so 30 s keeps them warm.
KEEPALIVE_EXPIRY = 30.0

# --- fixed by standards --------------------------------------------------------

#: RFC 9309 section 2.5: parsers must read at least 500 KiB; Google reads exactly
#: that much and ignores the rest, and so do we.
ROBOTS_MAX_BYTES = 500 * 1024
#: Where an HTML page declares its charset. The HTML spec's pre-scan reads 1024
#: bytes, but real Vietnamese pages often put ``<meta charset>`` after inline
#: scripts, so a little more is read.
META_SCAN_BYTES = 8 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Response headers kept in FetchResult.headers (the others are dropped).
RELEVANT_HEADERS = (
    "content-type",
    "content-length",
    "content-encoding",
    "content-language",
    "etag",
    "last-modified",
    "date",
    "cache-control",
    "expires",
    "link",
    "x-robots-tag",
)

#: Every FetchError reason and what it means (FetchError.retryable says whether to retry).
REASONS = {
    "bad_scheme": "not http(s) (file:, javascript:, data:, mailto:, ...), maybe after a redirect",
    "bad_url": "the URL cannot be parsed or has no usable host",
    "unsafe_address": "the host resolves to a private/loopback/link-local/reserved address",
    "dns_error": "the host name does not resolve (retryable only for temporary DNS failures,"
    " such as no answer within the connect timeout)",
    "robots_disallowed": "robots.txt disallows the URL for our user agent",
    "robots_unavailable": "robots.txt gave 5xx/429 or was unreachable: host off-limits for now",
    "too_large": "the body exceeds max_bytes",
    "timeout": "connect or read timeout (retryable)",
    "deadline": "the whole request took longer than the deadline, e.g. a slow drip (retryable)",
    "connection_error": "refused, reset or broken connection (retryable)",
    "too_many_redirects": "more than max_redirects hops",
    "redirect_loop": "a redirect leads back to a URL already visited in this fetch",
    "bad_redirect": "a 3xx answer without a usable Location header",
    "bad_encoding": "an unsupported or corrupt Content-Encoding",
    "not_html": "a page was expected but the server sent another media type (image, PDF, ...)",
    "not_feed": "a feed was expected but the server sent another media type",
    "http_3xx": "an unexpected 3xx status (300, 305, ...)",
    "http_404": "not found (permanent)",
    "http_410": "gone (permanent)",
    "http_429": "too many requests (retryable, maybe with retry_after)",
    "http_4xx": "another client error (permanent)",
    "http_5xx": "server error (retryable, maybe with retry_after)",
    # raised by the crawl, not by fetch(): one vocabulary for every recorded failure
    "truncated": "the page ended before </html> (FetchResult.complete is False; retryable)",
    "internal_error": "an unexpected exception while fetching: a bug (retryable)",
}

#: Reasons retried inside one fetch() call. ``deadline`` is not: a server that
#: drip-feeds once will likely do it again, so the crawl retries it later instead.
_RETRIED_HERE = frozenset({"timeout", "connection_error", "dns_error", "http_429", "http_5xx"})
#: Failures of robots.txt that the page itself would hit too: raised as they are
#: rather than recorded as "robots.txt unreachable".
_HOST_FAILURES = frozenset({"unsafe_address", "bad_url", "dns_error"})


class FetchError(Exception):
    """A fetch failed; ``reason`` is one of :data:`REASONS`."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class Accept:
    """What a fetch expects: the Accept header, the media types taken, the error otherwise."""

    header: str
    media_types: frozenset[str]  # empty: anything goes
    reason: str = "not_html"


PAGE = Accept(
    "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
    frozenset({"text/html", "application/xhtml+xml"}),
    "not_html",
)
#: Feeds are often served as text/html, text/plain or octet-stream; those are
#: accepted and left to the feed parser, but images, PDFs and JSON are refused.
FEED = Accept(
    "application/rss+xml,application/atom+xml,application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.5",
    frozenset(
        {
            "application/rss+xml",
            "application/atom+xml",
            "application/rdf+xml",
            "application/xml",
            "text/xml",
            "text/html",
            "text/plain",
            "application/octet-stream",
        }
    ),
    "not_feed",
)
ANY = Accept("*/*", frozenset(), "not_html")


@dataclass(frozen=True)
class FetchSettings:
    """Knobs of the fetcher; defaults are the module constants above (see their comments)."""

    user_agent: str = USER_AGENT
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    deadline: float = DEADLINE
    max_bytes: int = MAX_BYTES
    max_redirects: int = MAX_REDIRECTS
    #: Hosts (names or literal IPs, no port) exempt from the address guard: the
    #: sources file's ``settings.allow_hosts`` plus ``config.allow_hosts_from_env()``.
    allow_hosts: frozenset[str] = frozenset()
    min_host_interval: float = MIN_HOST_INTERVAL
    max_crawl_delay: float = MAX_CRAWL_DELAY
    retries: int = RETRIES
    backoff_base: float = BACKOFF_BASE
    backoff_max: float = BACKOFF_MAX
    max_retry_after: float = MAX_RETRY_AFTER
    robots_ttl: float = ROBOTS_TTL
    robots_retry: float = ROBOTS_RETRY
    max_connections: int = MAX_CONNECTIONS

    @property
    def robots_token(self) -> str:
        """The product token robots.txt groups are matched against ("vnnews")."""
        return self.user_agent.split("/", 1)[0].strip()


@dataclass(frozen=True)
class FetchResult:
    """A successful answer (2xx, or 304 when a conditional request matched)."""

    url: str  # as requested
    final_url: str  # after redirects
    status: int
    headers: dict[str, str]  # RELEVANT_HEADERS that were present, lower-case names
    content: bytes  # body, Content-Encoding removed; empty for 304
    text: str  # decoded NFC text for HTML/XML/text bodies (decode_html), else ""
    charset: str  # Python codec name used for text, "" if not decoded
    etag: str | None
    last_modified: str | None
    not_modified: bool  # 304: the caller's copy is current
    elapsed: float  # seconds for the whole fetch, politeness waits and retries included
    redirects: tuple[str, ...]  # every hop after the requested URL, in order
    complete: bool  # False for an HTML page whose </html> never came (truncated)


class RobotsStore(Protocol):
    """Persistence for robots.txt answers, so several processes share them (news.hosts)."""

    def get(self, host: str) -> tuple[str, int | None, datetime] | None:
        """(text, HTTP status or None if unreachable, fetched_at) for a host key, if known."""

    def put(self, host: str, text: str, status: int | None, fetched_at: datetime) -> None:
        """Remember a robots.txt answer for a host key."""


# --- address guard ---------------------------------------------------------------

# The NAT64 well-known prefix (RFC 6052) embeds an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(address: IPAddress) -> bool:
    """True if the address is globally routable unicast, so fetching from it cannot reach
    this machine, its LAN or a cloud metadata service.

    Refuses private, loopback, link-local, multicast, reserved and unspecified
    addresses, CGNAT (100.64/10) and IPv6 forms that embed such an IPv4 address
    (IPv4-mapped, 6to4, NAT64).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if address.is_site_local:
            return False
    # is_global is False for RFC 1918, loopback, link-local, CGNAT, documentation,
    # reserved and unspecified ranges; multicast is "global" but never a web server.
    return address.is_global and not address.is_multicast


#: Runs getaddrinfo(), which has no timeout of its own: a lookup that hangs on a
#: dead resolver is abandoned to its thread while the fetch fails fast. Lookups
#: happen only when a connection is opened; threads start with the first one.
_RESOLVER = ThreadPoolExecutor(8, thread_name_prefix="dns")


def _lookup(host: str, port: int, timeout: float | None) -> list[tuple]:
    lookup = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return lookup.result(timeout=timeout)
    except FutureTimeout:
        lookup.cancel()  # if it has not started yet
        raise FetchError(
            "dns_error", f"{host}: no answer within {timeout:g} s", retryable=True
        ) from None


def resolve_guarded(
    host: str, port: int, allow_hosts: frozenset[str], timeout: float | None = None
) -> list[str]:
    """The addresses of ``host`` that may be connected to, in resolver order.

    Raises ``FetchError("dns_error")`` if the name does not resolve (retryable
    when the failure is temporary or the lookup took over ``timeout`` seconds)
    and ``FetchError("unsafe_address")`` if no address is public (unless the
    host is allow-listed, in which case every address is returned).
    """
    try:
        infos = _lookup(host, port, timeout)
    except socket.gaierror as exc:
        temporary = exc.errno == socket.EAI_AGAIN
        raise FetchError("dns_error", f"{host}: {exc}", retryable=temporary) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if host.lower().strip("[]") in allow_hosts:
        return addresses
    public = [a for a in addresses if is_public_address(ipaddress.ip_address(a))]
    if not public:
        log.warning("refusing %s: resolves to non-public %s", host, ", ".join(addresses))
        raise FetchError("unsafe_address", f"{host} resolves to {', '.join(addresses)}")
    return public


class _QuickAckStream(httpcore.NetworkStream):
    """A TCP stream that acknowledges every segment at once (Linux ``TCP_QUICKACK``).

    Servers that write the response headers and the body in two ``send()``
    calls without ``TCP_NODELAY`` (Python's ``http.server``, some CMS plug-ins)
    interact with the client's delayed ACK: on a kept-alive connection each
    response then stalls ~40 ms until the ACK timer fires. Measured against
    newsim: 44 ms per page without this, 1.4 ms with it. The kernel clears the
    flag after use, so it is set again before every read (one cheap syscall).
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._socket = stream.get_extra_info("socket")

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _QuickAckStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves every connection's host itself and dials only the addresses it vetted.

    Checking at connect time (not only before the request) is what defeats DNS
    rebinding and redirects: whatever URL reaches the pool, the socket can only
    be opened to an address that passed the guard. TLS still verifies the
    certificate against the host name (httpcore passes it as SNI separately).
    """

    def __init__(self, allow_hosts: frozenset[str]) -> None:
        self._allow_hosts = allow_hosts

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in resolve_guarded(host, port, self._allow_hosts, timeout):
            try:
                stream = super().connect_tcp(address, port, timeout, local_address, socket_options)
                return _QuickAckStream(stream) if hasattr(socket, "TCP_QUICKACK") else stream
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the host's next address, like socket.create_connection
        assert error is not None
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool dials through :class:`_GuardedBackend`.

    httpx 0.28 does not take a network backend, so the pool it builds is
    replaced by an identical one that has ours (test_fetch checks the guard is
    in force at this layer, so an httpx upgrade that breaks this fails loudly).
    """

    def __init__(
        self,
        allow_hosts: frozenset[str],
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allow_hosts),
        )


# --- decoding ----------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([\w:.+-]+)", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([\w:.+-]+)", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([\w:.+-]+)", re.IGNORECASE)
_HTML_END = re.compile(rb"</html\s*>", re.IGNORECASE)
#: Labels that the WHATWG Encoding standard reads as windows-1252.
_AS_CP1252 = frozenset({"iso8859-1", "ascii"})
#: Server-wide defaults (Apache's AddDefaultCharset ISO-8859-1 ...) that say
#: nothing about the page: a charset the page itself declares wins over them.
_WEAK_HEADER_CODECS = frozenset({"cp1252"})
#: Last resorts for bytes that are not UTF-8 and declare nothing usable: legacy
#: Vietnamese pages are windows-1258; cp1252 catches Western pages.
_FALLBACK_CODECS = ("cp1258", "cp1252")


def decode_html(content: bytes, content_type: str | None) -> tuple[str, str]:
    """Decode an HTML/XML body to NFC text; returns (text, Python codec name used).

    Order: byte-order mark; valid UTF-8 (Vietnamese sites very often declare the
    wrong charset for UTF-8 bytes, and non-UTF-8 text almost never validates as
    UTF-8); the header charset; ``<meta charset>`` / http-equiv / the XML
    declaration; windows-1258, then cp1252. A generic Western header charset
    yields to the page's own declaration. windows-1258 decodes tone marks as
    combining characters, hence the NFC.
    """
    for bom, codec in _BOMS:
        if content.startswith(bom):
            return _nfc(content[len(bom) :].decode(codec, "replace")), codec
    try:
        return _nfc(content.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    header = _codec(_first_group(_HEADER_CHARSET, content_type or ""))
    head = content[:META_SCAN_BYTES]
    declared = _codec(_first_group(_META_CHARSET, head) or _first_group(_XML_ENCODING, head))
    if declared is not None and declared.startswith(("utf-16", "utf-32")):
        declared = "utf-8"  # WHATWG: a meta tag cannot switch to UTF-16 (no BOM here)
    if header in _WEAK_HEADER_CODECS and declared is not None:
        header = None
    candidates = [c for c in (header, declared) if c is not None] + list(_FALLBACK_CODECS)
    for codec in candidates:
        if codec == "utf-8":  # declared UTF-8 with a few bad bytes: trust it, mark them
            return _nfc(content.decode("utf-8", "replace")), codec
        try:
            return _nfc(content.decode(codec)), codec
        except UnicodeDecodeError:
            continue
    return _nfc(content.decode(candidates[0], "replace")), candidates[0]


def _first_group(pattern: re.Pattern, text: str | bytes) -> str | None:
    match = pattern.search(text)
    if match is None:
        return None
    value = match.group(1)
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _codec(label: str | None) -> str | None:
    """Python's name for a charset label, or None if unknown or not a text encoding."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().lower()).name
        b"a".decode(name)  # LookupError for bytes-to-bytes codecs such as "base64"
    except LookupError:
        return None
    except UnicodeDecodeError:
        pass  # a text codec that needs more than one byte (UTF-16): fine
    return "cp1252" if name in _AS_CP1252 else name


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _is_text(media_type: str) -> bool:
    return not media_type or media_type.startswith("text/") or "xml" in media_type


class _ContentDecoder:
    """Undoes Content-Encoding with a cap on the output, so a gzip bomb stops at max_bytes.

    Used even when we did not ask for compression: newsim's ``gzip`` fault (and
    some real servers) compress regardless. We advertise only gzip and deflate.
    """

    def __init__(self, coding: str) -> None:
        coding = coding.strip().lower()
        self._raw_deflate_fallback = coding == "deflate"
        if coding in ("", "identity"):
            self._zlib = None
        elif coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise FetchError("bad_encoding", f"unsupported Content-Encoding {coding!r}")

    def decode(self, data: bytes, max_out: int) -> bytes:
        if self._zlib is None:
            return data
        try:
            out = self._zlib.decompress(data, max_out)
        except zlib.error as exc:
            if not self._raw_deflate_fallback:
                raise FetchError("bad_encoding", f"corrupt compressed body: {exc}") from exc
            # "deflate" without the zlib header, as some servers send it.
            self._raw_deflate_fallback = False
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data, max_out)
        self._raw_deflate_fallback = False
        return out

    def flush(self) -> bytes:
        return self._zlib.flush() if self._zlib is not None else b""


# --- the fetcher -------------------------------------------------------------------


@dataclass(frozen=True)
class _Robots:
    """One host's robots.txt answer, parsed."""

    rules: Protego | None  # None: no rules (4xx: allow all) or unreachable
    status: int | None  # HTTP status; None when the server could not be reached
    fetched_at: datetime
    crawl_delay: float | None  # already clamped to max_crawl_delay

    @property
    def reachable(self) -> bool:
        return _robots_reachable(self.status)


def _robots_reachable(status: int | None) -> bool:
    """RFC 9309 2.3.1.3-4 and Google: 4xx means "no rules", but 429, 5xx and
    network errors mean "unreachable": assume complete disallow for now."""
    return status is not None and status < 500 and status != 429


@dataclass
class _Host:
    """Per-host state; ``turn`` serialises requests to the host (politeness)."""

    turn: threading.Lock = field(default_factory=threading.Lock)
    robots_lock: threading.Lock = field(default_factory=threading.Lock)
    next_at: float = 0.0  # time.monotonic() before which the next request must wait
    robots: _Robots | None = None


@dataclass(frozen=True)
class _Answer:
    """One HTTP exchange after Content-Encoding was removed."""

    url: str
    status: int
    headers: dict[str, str]
    content: bytes


class Fetcher:
    """Polite, guarded HTTP GETs for the crawl; thread-safe, one per process.

    Use as a context manager (or call :meth:`close`) to release connections.
    """

    def __init__(
        self, settings: FetchSettings | None = None, *, robots_store: RobotsStore | None = None
    ) -> None:
        self.settings = settings or FetchSettings()
        self._store = robots_store
        allow = frozenset(h.strip().lower().strip("[]") for h in self.settings.allow_hosts)
        limits = httpx.Limits(
            max_connections=self.settings.max_connections,
            max_keepalive_connections=min(MAX_KEEPALIVE, self.settings.max_connections),
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
        # The transport, not an httpx.Client: redirects, cookies and content
        # decoding are handled here, and the Client's layers for them cost half
        # of a page's fetch CPU (0.5 of 1.0 ms a page against newsim).
        self._transport = GuardedTransport(allow, limits)
        self._default_headers = {
            "User-Agent": self.settings.user_agent,
            "Accept-Encoding": "gzip, deflate",
        }
        self._timeouts = {
            "connect": self.settings.connect_timeout,
            "read": min(self.settings.read_timeout, self.settings.deadline),
            "write": self.settings.read_timeout,
            "pool": self.settings.deadline,
        }
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: Accept | str = PAGE,
    ) -> FetchResult:
        """GET ``url`` politely, following redirects; raises :class:`FetchError`.

        ``etag`` / ``last_modified`` from an earlier fetch make the request
        conditional; an unchanged page comes back as ``not_modified=True``.
        ``accept`` is :data:`PAGE`, :data:`FEED`, :data:`ANY`, or a bare Accept
        header (then any media type is taken).
        """
        started = time.monotonic()
        if isinstance(accept, str):
            accept = Accept(accept, frozenset())
        headers = {"Accept": accept.header}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            answer, redirects = self._follow(
                url, headers, accept, limit=self.settings.max_bytes, obey_robots=True
            )
        except FetchError as exc:
            level = logging.WARNING if exc.reason == "unsafe_address" else logging.INFO
            log.log(level, "fetch failed %s: %s", url, exc)
            raise
        media_type = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        sniffed = b"<html" in answer.content[:1024].lower()
        is_html = "html" in media_type or (not media_type and sniffed)
        text, charset = "", ""
        if answer.content and _is_text(media_type):
            text, charset = decode_html(answer.content, answer.headers.get("content-type"))
        not_modified = answer.status == 304
        return FetchResult(
            url=url,
            final_url=answer.url,
            status=answer.status,
            headers=answer.headers,
            content=answer.content,
            text=text,
            charset=charset,
            etag=answer.headers.get("etag") or (etag if not_modified else None),
            last_modified=answer.headers.get("last-modified")
            or (last_modified if not_modified else None),
            not_modified=not_modified,
            elapsed=time.monotonic() - started,
            redirects=redirects,
            complete=not_modified or not is_html or _HTML_END.search(answer.content) is not None,
        )

    def crawl_delay(self, host: str) -> float:
        """Seconds between two requests to a host key: max(min_host_interval, Crawl-delay).

        Known once robots.txt of the host was read (by a fetch); until then the
        minimum interval. The crawl stores it in news.hosts to pace other processes.
        """
        state = self._hosts.get(host)
        delay = state.robots.crawl_delay if state and state.robots else None
        return max(self.settings.min_host_interval, delay or 0.0)

    # --- redirects, retries, one exchange -------------------------------------

    def _follow(
        self,
        url: str,
        headers: dict[str, str],
        accept: Accept,
        *,
        limit: int,
        obey_robots: bool,
        truncate: bool = False,
    ) -> tuple[_Answer, tuple[str, ...]]:
        """Follow redirects by hand so every hop is checked (scheme, robots, address)."""
        current = _checked_url(url)
        visited = {current}
        redirects: list[str] = []
        while True:
            if obey_robots:
                self._check_robots(current)
            answer = self._with_retries(current, headers, accept, limit, truncate)
            if answer.status not in REDIRECT_STATUSES:
                return answer, tuple(redirects)
            location = answer.headers.get("location")
            if not location:
                raise FetchError(
                    "bad_redirect", f"no Location from {current}", status=answer.status
                )
            try:
                target = str(httpx.URL(current).join(location).copy_with(fragment=None))
            except httpx.InvalidURL as exc:
                raise FetchError(
                    "bad_redirect", f"Location {location!r}: {exc}", status=answer.status
                ) from exc
            target = _checked_url(target)
            if target in visited:
                raise FetchError(
                    "redirect_loop", f"{current} -> {target} again", status=answer.status
                )
            if len(redirects) >= self.settings.max_redirects:
                raise FetchError(
                    "too_many_redirects",
                    f"more than {self.settings.max_redirects} hops from {url}",
                    status=answer.status,
                )
            log.debug("redirect %s -> %s (%d)", current, target, answer.status)
            visited.add(target)
            redirects.append(target)
            current = target

    def _with_retries(
        self, url: str, headers: dict[str, str], accept: Accept, limit: int, truncate: bool
    ) -> _Answer:
        attempt = 0
        while True:
            try:
                return self._exchange(url, headers, accept, limit, truncate)
            except FetchError as exc:
                retried = exc.retryable and exc.reason in _RETRIED_HERE
                if not retried or attempt >= self.settings.retries:
                    raise
                wait = exc.retry_after
                if wait is None:
                    span = min(self.settings.backoff_max, self.settings.backoff_base * 2**attempt)
                    wait = span / 2 + random.uniform(0, span / 2)
                elif wait > self.settings.max_retry_after:
                    raise
                attempt += 1
                log.info(
                    "retry %d/%d of %s in %.2fs: %s", attempt, self.settings.retries, url, wait, exc
                )
                # Waiting is the host's, not this thread's: other requests to it wait too.
                self._defer(host_of(url), wait)

    def _exchange(
        self, url: str, headers: dict[str, str], accept: Accept, limit: int, truncate: bool
    ) -> _Answer:
        with self._turn(host_of(url)):
            started = time.monotonic()
            try:
                request = httpx.Request(
                    "GET",
                    url,
                    headers={**self._default_headers, **headers},
                    extensions={"timeout": self._timeouts},
                )
                response = self._transport.handle_request(request)
                try:
                    answer = self._receive(url, response, accept, limit, truncate, started)
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                raise FetchError("timeout", f"{type(exc).__name__}: {exc}", retryable=True) from exc
            except httpx.TransportError as exc:
                raise FetchError(
                    "connection_error", f"{type(exc).__name__}: {exc}", retryable=True
                ) from exc
            except httpx.InvalidURL as exc:
                raise FetchError("bad_url", str(exc)) from exc
            log.debug(
                "GET %s -> %d (%d bytes, %.0f ms)",
                url,
                answer.status,
                len(answer.content),
                (time.monotonic() - started) * 1000,
            )
            return answer

    def _receive(
        self,
        url: str,
        response: httpx.Response,
        accept: Accept,
        limit: int,
        truncate: bool,
        started: float,
    ) -> _Answer:
        status = response.status_code
        received = _header_map(response)
        headers = {name: received[name] for name in RELEVANT_HEADERS if name in received}
        if status in REDIRECT_STATUSES:
            headers["location"] = received.get("location", "")
        if status == 304 or status in REDIRECT_STATUSES:
            return _Answer(url, status, headers, b"")
        if status >= 300:
            raise _status_error(status, received.get("retry-after"))
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if accept.media_types and media_type and media_type not in accept.media_types:
            raise FetchError(accept.reason, f"{url} is {media_type}", status=status)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit and not truncate:
            raise FetchError("too_large", f"Content-Length {declared} > {limit}", status=status)
        decoder = _ContentDecoder(headers.get("content-encoding", ""))
        content = self._read_body(response, decoder, limit, truncate, started)
        return _Answer(url, status, headers, content)

    def _read_body(
        self,
        response: httpx.Response,
        decoder: _ContentDecoder,
        limit: int,
        truncate: bool,
        started: float,
    ) -> bytes:
        """Stream the body, stopping at ``limit`` bytes (decoded) and at the deadline."""
        body = bytearray()
        raw = response.iter_raw()
        while True:
            chunk = next(raw, None)
            room = limit + 1 - len(body)  # one byte more than allowed reveals an overflow
            body += decoder.flush() if chunk is None else decoder.decode(chunk, room)
            if len(body) > limit:
                if truncate:
                    return bytes(body[:limit])
                raise FetchError("too_large", f"body over {limit} bytes")
            if time.monotonic() - started > self.settings.deadline:
                raise FetchError(
                    "deadline",
                    f"{len(body)} bytes after {self.settings.deadline:.1f}s",
                    retryable=True,
                )
            if chunk is None:
                return bytes(body)

    # --- politeness --------------------------------------------------------------

    def _host(self, host: str) -> _Host:
        with self._hosts_lock:
            return self._hosts.setdefault(host, _Host())

    @contextmanager
    def _turn(self, host: str) -> Iterator[None]:
        """One request at a time per host, each starting crawl_delay() after the last ended."""
        state = self._host(host)
        with state.turn:
            wait = state.next_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                yield
            finally:
                state.next_at = max(state.next_at, time.monotonic() + self.crawl_delay(host))

    def _defer(self, host: str, seconds: float) -> None:
        state = self._host(host)
        state.next_at = max(state.next_at, time.monotonic() + seconds)

    # --- robots.txt --------------------------------------------------------------

    def _check_robots(self, url: str) -> None:
        robots = self._robots(url)
        if not robots.reachable:
            retry_at = robots.fetched_at + timedelta(seconds=self.settings.robots_retry)
            raise FetchError(
                "robots_unavailable",
                f"robots.txt of {host_of(url)}: status {robots.status}",
                retryable=True,
                retry_after=max(0.0, (retry_at - datetime.now(UTC)).total_seconds()),
            )
        if robots.rules is not None and not robots.rules.can_fetch(url, self.settings.robots_token):
            raise FetchError("robots_disallowed", url)

    def _robots(self, url: str) -> _Robots:
        """The host's robots.txt: from memory, else the store, else the network."""
        host = host_of(url)
        state = self._host(host)
        with state.robots_lock:  # one download per host even when threads race
            now = datetime.now(UTC)
            if state.robots is None or self._expired(state.robots, now):
                stored = self._store.get(host) if self._store is not None else None
                robots = self._parse_robots(host, *stored) if stored else None
                downloaded = robots is None or self._expired(robots, now)
                if downloaded:
                    text, status = self._download_robots(url)
                    robots = self._parse_robots(host, text, status, now)
                    if self._store is not None:
                        self._store.put(host, text, status, now)
                state.robots = robots
                if downloaded:
                    # That was a request to the host too: the page waits a
                    # Crawl-delay after it (known only now).
                    self._defer(host, self.crawl_delay(host))
            return state.robots

    def _expired(self, robots: _Robots, now: datetime) -> bool:
        ttl = self.settings.robots_ttl if robots.reachable else self.settings.robots_retry
        return now - robots.fetched_at >= timedelta(seconds=ttl)

    def _download_robots(self, url: str) -> tuple[str, int | None]:
        """(text, status) of /robots.txt, status None if the server was unreachable."""
        robots_url = str(httpx.URL(url).copy_with(path="/robots.txt", query=None, fragment=None))
        headers = {"Accept": "text/plain,*/*;q=0.5"}
        try:
            answer, _ = self._follow(
                robots_url, headers, ANY, limit=ROBOTS_MAX_BYTES, obey_robots=False, truncate=True
            )
        except FetchError as exc:
            if exc.reason in _HOST_FAILURES:
                raise
            # 4xx: no rules. Redirect trouble (status 3xx): Google treats more
            # than 5 hops as a 404. Anything else: unreachable, host disallowed.
            if _robots_reachable(exc.status):
                log.debug("robots.txt %s: %s; allowing all", robots_url, exc)
            else:
                log.warning(
                    "robots.txt %s unreachable (%s): host disallowed for now", robots_url, exc
                )
            return "", exc.status
        return answer.content.decode("utf-8", "replace"), answer.status

    def _parse_robots(
        self, host: str, text: str, status: int | None, fetched_at: datetime
    ) -> _Robots:
        rules = Protego.parse(text) if status is not None and 200 <= status < 300 else None
        delay = rules.crawl_delay(self.settings.robots_token) if rules is not None else None
        if delay is not None and delay > self.settings.max_crawl_delay:
            log.warning(
                "%s asks for Crawl-delay %.1fs; using %.1fs",
                host,
                delay,
                self.settings.max_crawl_delay,
            )
            delay = self.settings.max_crawl_delay
        return _Robots(rules, status, fetched_at, delay)


def _header_map(response: httpx.Response) -> dict[str, str]:
    """The response headers by lower-case name, repeated ones joined with ", " (as
    ``httpx.Headers`` does), read once: each ``Headers`` look-up scans them all."""
    merged: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged


def _checked_url(url: str) -> str:
    """``url`` without its fragment, or FetchError if it is not a crawlable http(s) URL."""
    try:
        host_of(url)
    except UrlError as exc:
        http = urlsplit(url.strip()).scheme.lower() in HTTP_SCHEMES
        raise FetchError("bad_url" if http else "bad_scheme", str(exc)) from exc
    return url.strip().partition("#")[0]


def _status_error(status: int, retry_after: str | None) -> FetchError:
    if status in (404, 410):
        return FetchError(f"http_{status}", f"status {status}", status=status)
    if status == 429 or status >= 500:
        reason = "http_429" if status == 429 else "http_5xx"
        return FetchError(
            reason,
            f"status {status}",
            retryable=True,
            retry_after=parse_retry_after(retry_after),
            status=status,
        )
    if status >= 400:
        return FetchError("http_4xx", f"status {status}", status=status)
    return FetchError("http_3xx", f"status {status}", status=status)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
