"""The fetcher against real HTTP servers on 127.0.0.1 (pytest-httpserver, raw sockets, newsim).

Every test runs under ``dialled``: it records each address a socket is opened
to and refuses anything but loopback outright, so a broken guard fails the test
instead of sending a packet to 169.254.169.254 or 10.0.0.1.
"""

from __future__ import annotations

import gzip
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unicodedata
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import FIXTURES
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline.fetch import (
    FEED,
    PAGE,
    REASONS,
    USER_AGENT,
    Fetcher,
    FetchError,
    FetchSettings,
    GuardedTransport,
    decode_html,
    is_public_address,
    parse_retry_after,
    resolve_guarded,
)
from pipeline.urls import host_of

#: Small waits everywhere so the suite stays quick; behaviour, not speed, is checked.
FAST = FetchSettings(
    allow_hosts=frozenset({"127.0.0.1"}),
    min_host_interval=0.0,
    connect_timeout=2.0,
    read_timeout=2.0,
    deadline=5.0,
    backoff_base=0.01,
    backoff_max=0.05,
    max_retry_after=3.0,
)
ALLOW_ALL = "User-agent: *\nAllow: /\n"
VIETNAMESE = "Hà Nội mưa lớn, nhiều tuyến phố ngập sâu; người dân dắt xe qua đoạn đường ướt."


def html(body: str = f"<p>{VIETNAMESE}</p>", head: str = '<meta charset="utf-8">') -> str:
    return f"<!DOCTYPE html><html><head>{head}<title>t</title></head><body>{body}</body></html>"


@pytest.fixture(autouse=True)
def dialled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = socket.create_connection

    def loopback_only(address, *args, **kwargs):  # noqa: ANN001, ANN202 - socket's signature
        calls.append(address[0])
        if address[0] not in ("127.0.0.1", "::1"):
            raise OSError(f"test refused to dial {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)
    return calls


@pytest.fixture(scope="module")
def running_server() -> Iterator[HTTPServer]:
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(running_server: HTTPServer) -> Iterator[HTTPServer]:
    """A threaded test server with no handlers and an empty log (started once: stopping is slow)."""
    yield running_server
    running_server.clear()


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(FAST) as f:
        yield f


def serve_robots(srv: HTTPServer, text: str = ALLOW_ALL, status: int = 200) -> None:
    srv.expect_request("/robots.txt").respond_with_data(text, status, content_type="text/plain")


def paths(srv: HTTPServer) -> list[str]:
    return [request.path for request, _ in srv.log]


def arrivals(srv: HTTPServer, path: str, times: list[float], response: Response) -> None:
    """Serve ``response`` at ``path`` and note when each request arrived."""

    def handler(_: Request) -> Response:
        times.append(time.monotonic())
        return response

    srv.expect_request(path).respond_with_handler(handler)


def reason_of(fetcher: Fetcher, url: str, **kwargs) -> FetchError:  # noqa: ANN003
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(url, **kwargs)
    assert caught.value.reason in REASONS
    return caught.value


# --- the address guard -------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # CGNAT
        ("0.0.0.0", False),
        ("224.0.0.251", False),  # multicast
        ("240.0.0.1", False),  # reserved
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fec0::1", False),  # deprecated site-local
        ("ff02::1", False),
        ("::ffff:169.254.169.254", False),  # IPv4-mapped
        ("::ffff:8.8.8.8", True),
        ("2002:a00:1::", False),  # 6to4 wrapping 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    import ipaddress

    assert is_public_address(ipaddress.ip_address(address)) is public


def test_loopback_refused_unless_allowed(server: HTTPServer, dialled: list[str]) -> None:
    serve_robots(server)
    server.expect_request("/a").respond_with_data(html(), content_type="text/html")
    with Fetcher(replace(FAST, allow_hosts=frozenset())) as guarded:
        err = reason_of(guarded, server.url_for("/a"))
    assert err.reason == "unsafe_address" and not err.retryable
    assert paths(server) == [] and dialled == []

    with Fetcher(replace(FAST, allow_hosts=frozenset({"127.0.0.1"}))) as allowed:
        assert allowed.fetch(server.url_for("/a")).status == 200
    assert paths(server) == ["/robots.txt", "/a"]


def test_hostname_resolving_to_loopback(server: HTTPServer, dialled: list[str]) -> None:
    serve_robots(server)
    server.expect_request("/a").respond_with_data(html(), content_type="text/html")
    url = f"http://localhost:{server.port}/a"
    # Allow-listing the IP does not allow a name that resolves to it ...
    with Fetcher(FAST) as by_ip:
        assert reason_of(by_ip, url).reason == "unsafe_address"
    assert dialled == [] and paths(server) == []
    # ... but allow-listing the name does.
    with Fetcher(replace(FAST, allow_hosts=frozenset({"LocalHost"}))) as by_name:
        assert by_name.fetch(url).status == 200


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.64.0.1/",
        "http://0x7f000001/",  # 127.0.0.1 spelt in hex: a name the resolver maps to loopback
    ],
)
def test_redirect_to_private_address_never_dialled(
    server: HTTPServer, dialled: list[str], fetcher: Fetcher, target: str
) -> None:
    serve_robots(server)
    server.expect_request("/go").respond_with_data("", 302, headers={"Location": target})
    err = reason_of(fetcher, server.url_for("/go"))
    assert err.reason == "unsafe_address"
    assert set(dialled) == {"127.0.0.1"}  # only the test server was ever dialled
    assert paths(server) == ["/robots.txt", "/go"]


def test_guard_is_enforced_at_connection_time(server: HTTPServer, dialled: list[str]) -> None:
    """The transport itself refuses, whatever the caller checked before (DNS rebinding)."""
    server.expect_request("/").respond_with_data("secret")
    transport = GuardedTransport(frozenset(), httpx.Limits())
    with httpx.Client(transport=transport) as client, pytest.raises(FetchError) as caught:
        client.get(server.url_for("/"))
    assert caught.value.reason == "unsafe_address"
    assert dialled == [] and paths(server) == []


def self_signed(folder: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a certificate naming ``name``."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    return server_context, ssl.create_default_context(cafile=str(cert_path))


def test_tls_checks_the_name_while_dialling_the_vetted_address(
    tmp_path: Path, dialled: list[str]
) -> None:
    server_context, client_context = self_signed(tmp_path, "localhost")
    srv = HTTPServer(host="127.0.0.1", port=0, ssl_context=server_context)
    srv.start()
    try:
        srv.expect_request("/").respond_with_data("chào")
        allow = frozenset({"localhost", "127.0.0.1"})
        transport = GuardedTransport(allow, httpx.Limits(), verify=client_context)
        with httpx.Client(transport=transport) as client:
            assert client.get(f"https://localhost:{srv.port}/").text == "chào"
            # the same server by its address: the certificate does not name it
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.get(f"https://127.0.0.1:{srv.port}/")
    finally:
        srv.clear()
        srv.stop()
    assert "localhost" not in dialled and "127.0.0.1" in dialled  # resolved by the guard


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "bad_scheme"),
        ("javascript:alert(document.cookie)", "bad_scheme"),
        ("data:text/html,<b>x</b>", "bad_scheme"),
        ("mailto:toasoan@a.vn", "bad_scheme"),
        ("http:///nohost", "bad_url"),
    ],
)
def test_schemes(fetcher: Fetcher, dialled: list[str], url: str, reason: str) -> None:
    assert reason_of(fetcher, url).reason == reason
    assert dialled == []


def test_redirect_to_file_scheme(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    server.expect_request("/go").respond_with_data(
        "", 301, headers={"Location": "file:///etc/passwd"}
    )
    assert reason_of(fetcher, server.url_for("/go")).reason == "bad_scheme"


def test_unresolvable_host(fetcher: Fetcher) -> None:
    err = reason_of(fetcher, "http://no-such-host.invalid/")
    assert err.reason == "dns_error"


def test_a_hanging_dns_lookup_fails_fast_and_is_retryable(monkeypatch) -> None:
    """getaddrinfo() has no timeout: a dead resolver must not stall a fetch thread."""
    answered = threading.Event()

    def dead_resolver(*args, **kwargs):
        answered.wait(5)  # a resolver that does not answer
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", dead_resolver)
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        resolve_guarded("slow.example", 80, frozenset(), timeout=0.3)
    answered.set()
    assert time.monotonic() - started < 2
    assert caught.value.reason == "dns_error" and caught.value.retryable
    assert "no answer within 0.3 s" in str(caught.value)


# --- robots.txt and politeness ------------------------------------------------------


def test_robots_disallow_and_wildcards(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(
        server,
        "User-agent: *\nDisallow: /private/\n\n"
        "User-agent: vnnews\nDisallow: /private/\nDisallow: /*.pdf$\n",
    )
    server.expect_request("/tin/a.html").respond_with_data(html(), content_type="text/html")
    server.expect_request("/tin/b.pdf.html").respond_with_data(html(), content_type="text/html")
    for path in ("/private/a.html", "/tin/report.pdf"):
        err = reason_of(fetcher, server.url_for(path))
        assert err.reason == "robots_disallowed" and not err.retryable
    assert fetcher.fetch(server.url_for("/tin/a.html")).status == 200
    assert fetcher.fetch(server.url_for("/tin/b.pdf.html")).status == 200
    # robots.txt was read once and no disallowed path was ever requested
    assert paths(server) == ["/robots.txt", "/tin/a.html", "/tin/b.pdf.html"]
    assert server.log[0][0].headers["User-Agent"] == USER_AGENT


def test_robots_applies_to_redirect_targets(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server, "User-agent: *\nDisallow: /private/\n")
    server.expect_request("/go").respond_with_data("", 302, headers={"Location": "/private/x"})
    assert reason_of(fetcher, server.url_for("/go")).reason == "robots_disallowed"
    assert "/private/x" not in paths(server)


def test_crawl_delay_spaces_requests(server: HTTPServer) -> None:
    times: list[float] = []
    robots = Response("User-agent: *\nCrawl-delay: 0.3\n", content_type="text/plain")
    arrivals(server, "/robots.txt", times, robots)
    arrivals(server, "/p", times, Response(html(), content_type="text/html"))
    with Fetcher(FAST) as fetcher:
        for _ in range(3):
            fetcher.fetch(server.url_for("/p"))
        assert fetcher.crawl_delay(host_of(server.url_for("/"))) == pytest.approx(0.3)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= 0.3  # robots.txt counts as a request too


def test_crawl_delay_is_clamped_and_floored(server: HTTPServer) -> None:
    serve_robots(server, "User-agent: *\nCrawl-delay: 3600\n")
    server.expect_request("/p").respond_with_data(html(), content_type="text/html")
    host = host_of(server.url_for("/"))
    with Fetcher(replace(FAST, max_crawl_delay=0.2, min_host_interval=0.1)) as fetcher:
        assert fetcher.crawl_delay(host) == 0.1  # robots.txt not read yet: the floor
        fetcher.fetch(server.url_for("/p"))
        assert fetcher.crawl_delay(host) == 0.2  # 3600 clamped


def test_hosts_are_polite_separately_and_in_parallel(server: HTTPServer) -> None:
    """Two requests to one host are spaced; another host is not held up meanwhile."""
    other = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    other.start()
    try:
        times: dict[str, list[float]] = {"a": [], "b": []}
        for name, srv in (("a", server), ("b", other)):
            serve_robots(srv, status=404)
            arrivals(srv, "/p", times[name], Response(html(), content_type="text/html"))
        urls = [server.url_for("/p"), server.url_for("/p"), other.url_for("/p")]
        with (
            Fetcher(replace(FAST, min_host_interval=0.6)) as fetcher,
            ThreadPoolExecutor(3) as pool,
        ):
            results = list(pool.map(fetcher.fetch, urls))
        assert [r.status for r in results] == [200, 200, 200]
        assert times["a"][1] - times["a"][0] >= 0.6
        assert times["b"][0] < times["a"][1]  # host b did not wait for host a's turn
    finally:
        other.clear()
        other.stop()


def test_robots_4xx_allows_all(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server, "gone", status=404)
    server.expect_request("/p").respond_with_data(html(), content_type="text/html")
    assert fetcher.fetch(server.url_for("/p")).status == 200


def test_robots_5xx_disallows_for_now(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server, "oops", status=503)
    server.expect_request("/p").respond_with_data(html(), content_type="text/html")
    first = reason_of(fetcher, server.url_for("/p"))
    assert first.reason == "robots_unavailable" and first.retryable
    assert 0 < first.retry_after <= FAST.robots_retry
    # the answer is remembered: no second burst of robots.txt requests, no page request
    assert reason_of(fetcher, server.url_for("/p")).reason == "robots_unavailable"
    assert set(paths(server)) == {"/robots.txt"}
    assert len(paths(server)) == FAST.retries + 1


class DictStore:
    """A RobotsStore in a dict (the crawl's is Postgres); counts its calls."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, int | None, datetime]] = {}
        self.puts = 0

    def get(self, host: str) -> tuple[str, int | None, datetime] | None:
        return self.rows.get(host)

    def put(self, host: str, text: str, status: int | None, fetched_at: datetime) -> None:
        self.rows[host] = (text, status, fetched_at)
        self.puts += 1


def test_robots_store_shares_robots_between_fetchers(server: HTTPServer) -> None:
    serve_robots(server, "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.25\n")
    server.expect_request("/p").respond_with_data(html(), content_type="text/html")
    store = DictStore()
    host = host_of(server.url_for("/"))
    with Fetcher(FAST, robots_store=store) as first:
        first.fetch(server.url_for("/p"))
    text, status, fetched_at = store.rows[host]
    assert status == 200 and "Disallow: /private/" in text
    assert fetched_at.tzinfo is not None and store.puts == 1
    with Fetcher(FAST, robots_store=store) as second:  # another process, say
        assert reason_of(second, server.url_for("/private/x")).reason == "robots_disallowed"
        second.fetch(server.url_for("/p"))
        assert second.crawl_delay(host) == 0.25
    assert paths(server).count("/robots.txt") == 1 and store.puts == 1


def test_stale_stored_robots_is_refetched(server: HTTPServer) -> None:
    serve_robots(server)
    server.expect_request("/p").respond_with_data(html(), content_type="text/html")
    store = DictStore()
    host = host_of(server.url_for("/"))
    store.rows[host] = ("User-agent: *\nDisallow: /\n", 200, datetime(2020, 1, 1, tzinfo=UTC))
    with Fetcher(FAST, robots_store=store) as fetcher:
        assert fetcher.fetch(server.url_for("/p")).status == 200
    assert paths(server) == ["/robots.txt", "/p"] and store.rows[host][0] == ALLOW_ALL


# --- retries ------------------------------------------------------------------------


def sequence(srv: HTTPServer, path: str, responses: list[Response], times: list[float]) -> None:
    """Answer ``path`` with the given responses in turn (then the last one for ever)."""

    def handler(_: Request) -> Response:
        times.append(time.monotonic())
        return responses[min(len(times), len(responses)) - 1]

    srv.expect_request(path).respond_with_handler(handler)


def test_retry_after_is_honoured(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    times: list[float] = []
    sequence(
        server,
        "/p",
        [
            Response("slow down", 429, headers={"Retry-After": "1"}),
            Response(html(), 200, content_type="text/html"),
        ],
        times,
    )
    assert fetcher.fetch(server.url_for("/p")).status == 200
    assert len(times) == 2 and times[1] - times[0] >= 1.0


def test_long_retry_after_is_handed_to_the_caller(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    times: list[float] = []
    sequence(server, "/p", [Response("", 503, headers={"Retry-After": "120"})], times)
    err = reason_of(fetcher, server.url_for("/p"))
    assert (err.reason, err.retryable, err.retry_after, err.status) == ("http_5xx", True, 120, 503)
    assert len(times) == 1


def test_retry_after_http_date() -> None:
    now = datetime(2024, 11, 5, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Tue, 05 Nov 2024 09:00:30 GMT", now) == 30.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Tue, 05 Nov 2024 08:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None


def test_503_burst_then_success(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    times: list[float] = []
    sequence(
        server,
        "/p",
        [Response("", 503)] * 3 + [Response(html(), 200, content_type="text/html")],
        times,
    )
    result = fetcher.fetch(server.url_for("/p"))
    assert result.status == 200 and VIETNAMESE in result.text and len(times) == 4


def test_retries_run_out(server: HTTPServer) -> None:
    serve_robots(server)
    times: list[float] = []
    sequence(server, "/p", [Response("", 502)], times)
    with Fetcher(replace(FAST, retries=2)) as fetcher:
        err = reason_of(fetcher, server.url_for("/p"))
    assert (err.reason, err.retryable, err.status) == ("http_5xx", True, 502)
    assert len(times) == 3


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, "http_404"), (410, "http_410"), (403, "http_4xx"), (300, "http_3xx")],
)
def test_permanent_errors_are_not_retried(
    server: HTTPServer, fetcher: Fetcher, status: int, reason: str
) -> None:
    serve_robots(server)
    times: list[float] = []
    sequence(server, "/p", [Response("no", status)], times)
    err = reason_of(fetcher, server.url_for("/p"))
    assert (err.reason, err.retryable, err.status) == (reason, False, status)
    assert len(times) == 1


@contextmanager
def reset_once_server(body: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """A raw HTTP server whose first page answer stops halfway with a TCP RST."""
    listener = socket.create_server(("127.0.0.1", 0))
    page_requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # listener closed: the test is over
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request and (data := conn.recv(4096)):
                    request += data
                path = request.split(b" ")[1] if request.count(b" ") >= 2 else b""
                if path == b"/robots.txt":
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                page_requests.append(path)
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                if len(page_requests) == 1:
                    conn.sendall(head + body[: len(body) // 2])
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    conn.sendall(head + body)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", page_requests
    finally:
        listener.close()


def test_reset_mid_body_is_retried(fetcher: Fetcher) -> None:
    body = html("<p>" + VIETNAMESE * 200 + "</p>").encode()
    with reset_once_server(body) as (base, page_requests):
        result = fetcher.fetch(base + "/p")
    assert result.content == body and result.complete
    assert page_requests == [b"/p", b"/p"]


def test_read_timeout_is_retried_then_reported(server: HTTPServer) -> None:
    serve_robots(server)
    times: list[float] = []

    def stalled(_: Request) -> Response:
        times.append(time.monotonic())
        time.sleep(1.0)
        return Response(html(), content_type="text/html")

    server.expect_request("/p").respond_with_handler(stalled)
    with Fetcher(replace(FAST, read_timeout=0.3, retries=1)) as fetcher:
        err = reason_of(fetcher, server.url_for("/p"))
    assert (err.reason, err.retryable) == ("timeout", True)
    assert len(times) == 2


# --- caps --------------------------------------------------------------------------


def test_size_cap_stops_the_download_early(server: HTTPServer) -> None:
    serve_robots(server)
    chunk = b"<!-- " + b"x" * (64 * 1024 - 9) + b" -->"
    sent: list[int] = []

    def endless(_: Request) -> Response:
        def body() -> Iterator[bytes]:
            yield b"<!DOCTYPE html><html><body>"
            for _ in range(800):  # 50 MB, no Content-Length, like newsim's oversize fault
                sent.append(len(chunk))
                yield chunk

        return Response(body(), content_type="text/html")

    server.expect_request("/big").respond_with_handler(endless)
    with Fetcher(replace(FAST, max_bytes=256 * 1024)) as fetcher:
        err = reason_of(fetcher, server.url_for("/big"))
    assert err.reason == "too_large" and not err.retryable
    time.sleep(0.2)  # let the server notice the closed socket
    # Far less than the 50 MB on offer: what we read plus socket buffers.
    assert sum(sent) < 16 * 1024 * 1024


def test_declared_length_over_the_cap(server: HTTPServer) -> None:
    serve_robots(server)
    server.expect_request("/big").respond_with_data("x" * 5000, content_type="text/html")
    with Fetcher(replace(FAST, max_bytes=1000)) as fetcher:
        assert reason_of(fetcher, server.url_for("/big")).reason == "too_large"


def test_gzip_bomb_is_capped(server: HTTPServer) -> None:
    serve_robots(server)
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MB of zeros in ~64 KB
    server.expect_request("/bomb").respond_with_data(
        bomb, content_type="text/html", headers={"Content-Encoding": "gzip"}
    )
    with Fetcher(replace(FAST, max_bytes=1024 * 1024)) as fetcher:
        assert reason_of(fetcher, server.url_for("/bomb")).reason == "too_large"


def test_slow_drip_hits_the_deadline(server: HTTPServer) -> None:
    serve_robots(server)

    def drip(_: Request) -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(300):  # 30 s in all, each byte well within the read timeout
                yield b"<"
                time.sleep(0.1)

        return Response(body(), content_type="text/html")

    server.expect_request("/drip").respond_with_handler(drip)
    started = time.monotonic()
    with Fetcher(replace(FAST, deadline=1.0, read_timeout=1.0)) as fetcher:
        err = reason_of(fetcher, server.url_for("/drip"))
    assert (err.reason, err.retryable) == ("deadline", True)
    # Not retried in-process, and nowhere near the 30 s the server would take.
    assert paths(server).count("/drip") == 1
    assert time.monotonic() - started < 10


# --- redirects ----------------------------------------------------------------------


def test_redirect_chain(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    server.expect_request("/go/1").respond_with_data("", 301, headers={"Location": "2"})
    server.expect_request("/go/2").respond_with_data(
        "", 307, headers={"Location": server.url_for("/final#top")}
    )
    server.expect_request("/final").respond_with_data(html(), content_type="text/html")
    result = fetcher.fetch(server.url_for("/go/1"))
    assert result.status == 200 and result.url == server.url_for("/go/1")
    assert result.final_url == server.url_for("/final")
    assert result.redirects == (server.url_for("/go/2"), server.url_for("/final"))


def test_redirect_limit(server: HTTPServer) -> None:
    serve_robots(server)
    for i in range(10):
        server.expect_request(f"/r{i}").respond_with_data(
            "", 302, headers={"Location": f"/r{i + 1}"}
        )
    with Fetcher(replace(FAST, max_redirects=3)) as fetcher:
        err = reason_of(fetcher, server.url_for("/r0"))
    assert err.reason == "too_many_redirects" and not err.retryable
    assert paths(server) == ["/robots.txt", "/r0", "/r1", "/r2", "/r3"]


def test_redirect_loop(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    server.expect_request("/loop/a").respond_with_data("", 302, headers={"Location": "/loop/b"})
    server.expect_request("/loop/b").respond_with_data("", 301, headers={"Location": "/loop/a"})
    assert reason_of(fetcher, server.url_for("/loop/a")).reason == "redirect_loop"
    assert paths(server) == ["/robots.txt", "/loop/a", "/loop/b"]


def test_redirect_without_location(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    server.expect_request("/go").respond_with_data("", 302)
    err = reason_of(fetcher, server.url_for("/go"))
    assert (err.reason, err.status) == ("bad_redirect", 302)


# --- conditional requests, media types, completeness --------------------------------


def test_not_modified(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    validators = {"ETag": '"v1"', "Last-Modified": "Tue, 05 Nov 2024 09:00:00 GMT"}

    def conditional(request: Request) -> Response:
        if (
            request.headers.get("If-None-Match") == '"v1"'
            or request.headers.get("If-Modified-Since") == validators["Last-Modified"]
        ):
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response(html(), content_type="text/html", headers=validators)

    server.expect_request("/p").respond_with_handler(conditional)
    first = fetcher.fetch(server.url_for("/p"))
    assert (first.status, first.not_modified, first.etag) == (200, False, '"v1"')
    assert first.last_modified == validators["Last-Modified"]
    again = fetcher.fetch(server.url_for("/p"), etag=first.etag)
    assert (again.status, again.not_modified, again.content, again.etag) == (304, True, b"", '"v1"')
    by_date = fetcher.fetch(server.url_for("/p"), last_modified=first.last_modified)
    assert by_date.not_modified and by_date.last_modified == first.last_modified
    sent = [request.headers for request, _ in server.log if request.path == "/p"]
    assert sent[1]["If-None-Match"] == '"v1"' and "If-None-Match" not in sent[2]


def test_media_types(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    server.expect_request("/img").respond_with_data(b"\x89PNG\r\n", content_type="image/png")
    server.expect_request("/rss").respond_with_data(
        '<?xml version="1.0" encoding="utf-8"?><rss><channel><title>Tin mới</title>'
        "</channel></rss>",
        content_type="application/rss+xml",
    )
    assert reason_of(fetcher, server.url_for("/img")).reason == "not_html"
    assert reason_of(fetcher, server.url_for("/img"), accept=FEED).reason == "not_feed"
    assert reason_of(fetcher, server.url_for("/rss"), accept=PAGE).reason == "not_html"
    feed = fetcher.fetch(server.url_for("/rss"), accept=FEED)
    assert "Tin mới" in feed.text and feed.complete
    assert fetcher.fetch(server.url_for("/img"), accept="image/*").content == b"\x89PNG\r\n"
    accepts = [request.headers["Accept"] for request, _ in server.log if request.path == "/rss"]
    assert accepts[-1] == FEED.header


def test_truncated_page_is_flagged(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    page = html()
    server.expect_request("/whole").respond_with_data(page, content_type="text/html")
    server.expect_request("/cut").respond_with_data(page[:60], content_type="text/html")
    assert fetcher.fetch(server.url_for("/whole")).complete
    assert not fetcher.fetch(server.url_for("/cut")).complete


# --- content encoding and charsets -------------------------------------------------


def test_gzip_and_deflate_are_undone(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    body = html().encode()
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for path, data, coding in [
        ("/gz", gzip.compress(body), "gzip"),
        ("/zlib", zlib.compress(body), "deflate"),
        ("/raw", raw_deflate.compress(body) + raw_deflate.flush(), "deflate"),
    ]:
        server.expect_request(path).respond_with_data(
            data, content_type="text/html", headers={"Content-Encoding": coding}
        )
        result = fetcher.fetch(server.url_for(path))
        assert result.content == body and VIETNAMESE in result.text, path


@pytest.mark.parametrize(
    ("data", "coding"), [(b"not gzip at all", "gzip"), (b"x", "br"), (b"x", "compress")]
)
def test_bad_content_encoding(
    server: HTTPServer, fetcher: Fetcher, data: bytes, coding: str
) -> None:
    serve_robots(server)
    server.expect_request("/p").respond_with_data(
        data, content_type="text/html", headers={"Content-Encoding": coding}
    )
    assert reason_of(fetcher, server.url_for("/p")).reason == "bad_encoding"


TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")


def windows_1258(text: str) -> bytes:
    """Encode as a legacy Vietnamese page does: base letters precomposed, tones combining."""
    out = []
    for char in text:
        parts = unicodedata.normalize("NFD", char)
        base = "".join(c for c in parts if c not in TONE_MARKS)
        out.append(
            unicodedata.normalize("NFC", base) + "".join(c for c in parts if c in TONE_MARKS)
        )
    return "".join(out).encode("cp1258")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html; charset=windows-1258",  # newsim charset-1258 (plus the meta below)
        "text/html; charset=iso-8859-1",  # newsim charset-wrong
        "text/html",  # newsim charset-missing
        None,
    ],
)
def test_utf8_bytes_win_over_wrong_declarations(content_type: str | None) -> None:
    page = html(head='<meta http-equiv="Content-Type" content="text/html; charset=windows-1258">')
    text, charset = decode_html(page.encode("utf-8"), content_type)
    assert (text, charset) == (page, "utf-8")


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        ("text/html; charset=windows-1258", ""),
        ("text/html", '<meta charset="windows-1258">'),
        ("text/html; charset=ISO-8859-1", '<meta charset="windows-1258">'),  # weak header
        (None, ""),  # nothing declared: the Vietnamese fallback
    ],
)
def test_real_windows_1258_page(content_type: str | None, head: str) -> None:
    page = html(head=head)
    data = windows_1258(page)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text, charset = decode_html(data, content_type)
    assert charset == "cp1258"
    assert text == page and unicodedata.is_normalized("NFC", text)


def test_byte_order_marks_and_utf8_with_a_bad_byte() -> None:
    page = html()
    assert decode_html(page.encode("utf-16"), "text/html; charset=iso-8859-1")[0] == page
    assert decode_html(b"\xef\xbb\xbf" + page.encode(), None) == (page, "utf-8")
    damaged = page.encode().replace(b"</title>", b"\xff</title>")
    text, charset = decode_html(damaged, "text/html; charset=utf-8")
    assert charset == "utf-8" and VIETNAMESE in text and "\ufffd" in text
    # unknown or non-text labels are ignored rather than trusted
    legacy = windows_1258(html(head=""))
    assert decode_html(legacy, "text/html; charset=base64")[1] == "cp1258"


def test_fetch_decodes_mislabelled_utf8(server: HTTPServer, fetcher: Fetcher) -> None:
    serve_robots(server)
    page = html(head='<meta charset="windows-1258">')
    server.expect_request("/p").respond_with_data(
        page.encode(), content_type="text/html; charset=windows-1258"
    )
    result = fetcher.fetch(server.url_for("/p"))
    assert (result.text, result.charset) == (page, "utf-8")
    assert result.headers["content-type"] == "text/html; charset=windows-1258"


# --- newsim: the faults a crawl meets -----------------------------------------------

NEWSIM_ARTICLES = FIXTURES / "http" / "articles.jsonl"


@contextmanager
def newsim(shared: Path, faults: str = "", crawl_delay: int = 0) -> Iterator[str]:
    """Run ../shared/newsim on a free port with ``faults``; yields its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(shared / "newsim" / "newsim.py"),
            "--articles",
            str(NEWSIM_ARTICLES),
            "--port",
            "0",
            "--truth",
            "--crawl-delay",
            str(crawl_delay),
            *(["--faults", faults] if faults else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"newsim did not start: {line!r}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def truth(base: str) -> dict:
    return httpx.get(base + "_truth").json()


def newsim_log(base: str) -> list[dict]:
    return httpx.get(base + "_log").json()["requests"]


def with_fault(base: str, fault: str) -> dict:
    return next(a for a in truth(base)["articles"] if fault in a["faults"])


@pytest.mark.shared
def test_newsim_charset_faults(shared_dir: Path) -> None:
    faults = "charset-1258:1,charset-wrong:1,charset-missing:1,gzip:1.0"
    with newsim(shared_dir, faults) as base, Fetcher(FAST) as fetcher:
        for fault in ("charset-1258", "charset-wrong", "charset-missing"):
            article = with_fault(base, fault)
            result = fetcher.fetch(article["url"])
            assert result.charset == "utf-8", fault
            assert article["title"] in result.text, fault
            assert article["body"].splitlines()[0] in result.text, fault
        log = newsim_log(base)
    pages = [entry for entry in log if entry["path"] != "/robots.txt"]
    # every page came gzipped (the fault) and was decoded all the same
    assert all("gzip" in entry["faults"] for entry in pages) and len(pages) == 3


@pytest.mark.shared
def test_newsim_private_redirects_never_leave(shared_dir: Path, dialled: list[str]) -> None:
    with newsim(shared_dir, "redirect-private:1") as base, Fetcher(FAST) as fetcher:
        article = with_fault(base, "redirect-private")
        assert len(article["feed_urls"]) == 2  # one to 169.254.169.254, one to 10.0.0.1
        for url in article["feed_urls"]:
            assert reason_of(fetcher, url).reason == "unsafe_address"
    assert set(dialled) == {"127.0.0.1"}


@pytest.mark.shared
def test_newsim_oversize_stops_early(shared_dir: Path) -> None:
    with newsim(shared_dir, "oversize:1") as base, Fetcher(FAST) as fetcher:
        article = with_fault(base, "oversize")
        assert reason_of(fetcher, article["url"]).reason == "too_large"
        time.sleep(0.3)  # the server logs the request once its writes fail
        entry = next(e for e in newsim_log(base) if e["path"] == article["url"][len(base) - 1 :])
    # newsim could not finish its 50 MB: we hung up after the 10 MB cap.
    assert entry["faults"] == ["oversize"] and entry["error"] in (
        "ConnectionResetError",
        "BrokenPipeError",
    )


@pytest.mark.shared
def test_newsim_request_faults_are_ridden_out(shared_dir: Path) -> None:
    """A 503 burst, a 429 with Retry-After and a reset: each page still arrives."""
    with newsim(shared_dir, "503:1:3,429:1:1,reset:1,html-truncated:1") as base:
        articles = [a for a in truth(base)["articles"] if "html-truncated" not in a["faults"]]
        # The faults may stack up on one URL (three 503s, then the 429 ...).
        with Fetcher(replace(FAST, retries=6)) as fetcher:
            results = [fetcher.fetch(a["url"]) for a in articles[:3]]
        log = newsim_log(base)
        truncated = with_fault(base, "html-truncated")
        with Fetcher(FAST) as fetcher:
            assert not fetcher.fetch(truncated["url"]).complete
    assert all(r.status == 200 and r.complete for r in results)
    applied = [fault for entry in log for fault in entry["faults"]]
    assert applied.count("503") == 3 and "429" in applied and "reset" in applied


@pytest.mark.shared
def test_newsim_robots_and_crawl_delay(shared_dir: Path) -> None:
    with newsim(shared_dir, crawl_delay=1) as base, Fetcher(FAST) as fetcher:
        articles = truth(base)["articles"][:2]
        assert reason_of(fetcher, articles[0]["print_url"]).reason == "robots_disallowed"
        for article in articles:
            fetcher.fetch(article["url"])
        log = newsim_log(base)
    assert not any(entry["disallowed"] for entry in log)
    times = [entry["time"] for entry in log]
    assert len(times) == 3  # robots.txt and two pages
    # newsim stamps a request when it is done, to the millisecond; the next one
    # starts at least Crawl-delay later and takes its own time on top.
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 1.0 - 0.002
