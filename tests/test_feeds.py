"""Feed parsing: canonical links, dates, and recovery from feeds broken in the wild."""

from datetime import UTC, datetime

import pytest
from conftest import FIXTURES

from pipeline.feeds import FeedError, parse_feed

FEEDS = FIXTURES / "feeds"
BASE = "https://baothu.example.vn/rss/tin-moi-nhat.rss"


def test_clean_feed_items_are_canonical_and_deduplicated():
    parsed = parse_feed((FEEDS / "clean.rss").read_bytes(), BASE)
    assert parsed.problem is None
    assert [i.url for i in parsed.items] == [
        "https://baothu.example.vn/thoi-su/ha-noi-mo-them-tuyen-buyt-dien-1001.html",
        "https://baothu.example.vn/kinh-te/gia-lua-gao-tang-nhe-1002.html",
        "https://kinhte.baothu.example.vn/chuyen-de/bai-1003.html",
    ]
    first = parsed.items[0]
    assert first.title == "Hà Nội mở thêm tuyến buýt điện nối sân bay Nội Bài"
    assert first.published_at == datetime(2024, 3, 25, 13, 15, tzinfo=UTC)


def test_malformed_feed_is_recovered_and_flagged():
    parsed = parse_feed((FEEDS / "messy.rss").read_bytes(), BASE)
    assert parsed.problem  # the banner line and the bare '&' are reported
    urls = [i.url for i in parsed.items]
    assert "https://baothu.example.vn/the-thao/doi-tuyen-nu-1004.html" in urls
    # links that are not http(s) are kept as written so the crawl can record them
    assert any(u.startswith("file:") for u in urls)
    assert "javascript:alert(document.cookie)" in urls


def test_atom_relative_links_resolve_against_the_feed():
    parsed = parse_feed((FEEDS / "atom.xml").read_bytes(), BASE)
    assert [i.url for i in parsed.items] == [
        "https://baothu.example.vn/suc-khoe/phong-benh-soi-1005.html"
    ]


def test_an_html_page_is_not_a_feed():
    with pytest.raises(FeedError):
        parse_feed((FEEDS / "not_a_feed.html").read_bytes(), BASE)


def test_real_feeds_from_shared_data_parse(shared_dir):
    for path in sorted((shared_dir / "data" / "feeds").iterdir()):
        parsed = parse_feed(path.read_bytes(), "https://vnexpress.net/rss/tin-moi-nhat.rss")
        assert parsed.items, path.name
        assert all(i.url.startswith("http") for i in parsed.items), path.name
