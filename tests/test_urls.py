"""URL canonicalisation: the spellings feeds really use map to one URL, and nothing else changes."""

from __future__ import annotations

import pytest

from pipeline.urls import UrlError, canonicalize, host_of, is_http_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # campaign and click ids go, other parameters stay in their order
        (
            "https://tinnhanh.vn/a-1.html?utm_source=rss&id=7&utm_medium=feed&p=2&fbclid=IwAR0",
            "https://tinnhanh.vn/a-1.html?id=7&p=2",
        ),
        ("https://a.vn/x?zarsrc=31&gidzl=abc&utm_campaign=z", "https://a.vn/x"),
        (
            "https://a.vn/x?gclid=1&msclkid=2&dclid=3&mc_cid=4&mc_eid=5&_ga=6&q=t",
            "https://a.vn/x?q=t",
        ),
        ("https://a.vn/x?UTM_Source=rss&b=1", "https://a.vn/x?b=1"),
        # generic names are not tracking: kept
        ("https://a.vn/x?ref=home&source=rss", "https://a.vn/x?ref=home&source=rss"),
        # fragments, empty query and empty pairs
        ("https://a.vn/x.html#binh-luan", "https://a.vn/x.html"),
        ("https://a.vn/x.html?", "https://a.vn/x.html"),
        ("https://a.vn/x.html?a=1&&b=2", "https://a.vn/x.html?a=1&b=2"),
        # scheme and host case, default and explicit ports, userinfo
        ("HTTPS://VnExpress.NET:443/Thoi-Su/", "https://vnexpress.net/Thoi-Su/"),
        ("http://a.vn:80/", "http://a.vn/"),
        ("http://a.vn:8080/", "http://a.vn:8080/"),
        ("https://a.vn:80/", "https://a.vn:80/"),
        ("https://user:secret@a.vn/", "https://a.vn/"),
        ("https://a.vn", "https://a.vn/"),
        ("https://a.vn./x", "https://a.vn/x"),
        # international host names become IDNA
        ("https://Bộ-Công-An.VN/tin", "https://xn--b-cng-an-63a1467e.vn/tin"),
        ("http://báo.vn/", "http://xn--bo-mia.vn/"),
        # percent-encoding: upper-case hex, unreserved decoded, unsafe encoded
        ("https://a.vn/%7euser/%e1%bb%87?q=%c3%a9%2f", "https://a.vn/~user/%E1%BB%87?q=%C3%A9%2F"),
        ("https://a.vn/tin tức/ảnh.html", "https://a.vn/tin%20t%E1%BB%A9c/%E1%BA%A3nh.html"),
        ("https://a.vn/100%/x", "https://a.vn/100%25/x"),
        ("https://a.vn/?q=a+b", "https://a.vn/?q=a+b"),
        # dot segments
        ("https://a.vn/a/./b/../c.html", "https://a.vn/a/c.html"),
        ("https://a.vn/a/b/..", "https://a.vn/a/"),
        # IPv6 literal
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        # surrounding whitespace, as in sloppy feeds
        ("  https://a.vn/x \n", "https://a.vn/x"),
    ],
)
def test_canonicalize(url: str, expected: str) -> None:
    assert canonicalize(url) == expected
    assert canonicalize(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        (
            "../the-gioi/b-2.html",
            "https://a.vn/tin/thoi-su/a-1.html",
            "https://a.vn/tin/the-gioi/b-2.html",
        ),
        ("/rss/x.rss", "https://a.vn/tin/", "https://a.vn/rss/x.rss"),
        ("//cdn.a.vn/x?utm_source=y", "https://a.vn/", "https://cdn.a.vn/x"),
        ("?page=2", "https://a.vn/list?page=1", "https://a.vn/list?page=2"),
        ("https://b.vn/x", "https://a.vn/", "https://b.vn/x"),
    ],
)
def test_canonicalize_relative(url: str, base: str, expected: str) -> None:
    assert canonicalize(url, base) == expected


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "javascript:alert(document.cookie)",
        "data:text/html,<b>x</b>",
        "mailto:toasoan@a.vn",
        "ftp://a.vn/x",
        "/relative/without/base",
        "http:///no-host",
        "http://a.vn:99999/",
        "http://a.vn:8o/",
        "http://exa mple.vn/",
        "http://[not-ipv6]/",
        "https://a.vn/" + "x" * 2040,  # longer than MAX_URL_LENGTH
    ],
)
def test_not_crawlable(url: str) -> None:
    with pytest.raises(UrlError):
        canonicalize(url)
    assert not is_http_url(url)


def test_host_of() -> None:
    assert host_of("https://VnExpress.net/x") == "vnexpress.net"
    assert host_of("http://127.0.0.1:8765/robots.txt") == "127.0.0.1:8765"
    assert host_of("https://a.vn:443/") == "a.vn"
    assert host_of("http://[::1]:80/") == "[::1]"
    assert is_http_url("https://a.vn/x") and is_http_url("HTTP://A.VN")
    with pytest.raises(UrlError):
        host_of("javascript:void(0)")


def test_a_url_too_long_once_escaped_is_not_canonical() -> None:
    url = "https://a.vn/" + "đ" * 700  # 713 characters, each đ escaped to %C4%91
    assert is_http_url(url)
    with pytest.raises(UrlError, match="max 2048"):
        canonicalize(url)
