"""The crawl under hostile conditions: faults, politeness, no network.

Bad input must never lose or duplicate an article: every discovered URL ends in
a recorded state, articles are stored once, and the crawler never requests what
robots.txt forbids nor connects to private addresses.
"""

from __future__ import annotations

import random
import subprocess
import sys
from itertools import islice, pairwise

import psycopg
import pytest
from conftest import FIXTURES
from test_crawl_e2e import overlap_f1

from pipeline.crawl import CrawlOptions, crawl
from pipeline.sources import load_sources

FINAL_STATES = {"extracted", "duplicate", "not_article", "gone"}

#: Article faults that make a page unreachable by design: its only links redirect
#: to a private address or in a loop, or the page is a 50 MB stream.
UNREACHABLE = {"redirect-loop", "redirect-private", "oversize"}

#: Exact counts so every kind is exercised; request faults keep newsim's defaults.
FAULTS = ",".join(
    [
        "all",
        "html-truncated:2",
        "charset-1258:2",
        "charset-wrong:2",
        "charset-missing:2",
        "nfd:2",
        "canonical:3",
        "dup-items:3",
        "redirect:3",
        "redirect-loop:1",
        "redirect-private:2",
        "oversize:1",
    ]
)


@pytest.mark.slow
def test_faulty_site_loses_and_duplicates_nothing(newsim, shared_dir, database_url, tmp_path):
    subset = tmp_path / "articles.jsonl"
    with open(shared_dir / "data" / "vmds" / "articles.jsonl", encoding="utf-8") as source:
        subset.write_text("".join(islice(source, 80)), encoding="utf-8")
    site = newsim(
        "--articles",
        str(subset),
        "--crawl-delay",
        "0",
        "--feed-size",
        "200",
        "--faults",
        FAULTS,
        "--seed",
        "7",
    )
    truth = site.truth()
    sources = load_sources(site.sources_yaml(tmp_path / "sources.yaml"))

    options = CrawlOptions(workers=4, retry_base_delay=0.5, max_wait=60)
    summary = crawl(database_url, sources, options=options)

    with psycopg.connect(database_url) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM news.frontier GROUP BY state"))
        reasons = {
            r
            for (r,) in conn.execute(
                "SELECT DISTINCT error_reason FROM news.frontier WHERE state = 'gone'"
            )
        }
        stored = dict(conn.execute("SELECT url, body FROM news.articles"))
        duplicates = conn.execute(
            "SELECT count(*) - count(DISTINCT url) FROM news.articles"
        ).fetchone()[0]
    assert set(states) <= FINAL_STATES, (states, summary.format())
    assert duplicates == 0
    expected = {a["url"]: a for a in truth["articles"] if not UNREACHABLE & set(a["faults"])}
    assert set(expected) <= set(stored), summary.format()
    assert set(stored) <= {a["url"] for a in truth["articles"]}
    # pages declared in the wrong charset or sent decomposed come back intact
    for url, article in expected.items():
        if {"nfd", "charset-1258", "charset-wrong", "charset-missing"} & set(article["faults"]):
            assert overlap_f1(stored[url], article["body"]) >= 0.98, (url, article["faults"])
    # links the crawler refused are recorded with the reason, never fetched
    assert {"unsafe_address", "bad_scheme", "offsite"} <= reasons, reasons
    assert not [r for r in site.log() if r["disallowed"]]


@pytest.mark.slow
def test_crawl_delay_is_honoured_between_requests(newsim, database_url, tmp_path):
    site = newsim("--articles", str(FIXTURES / "http" / "articles.jsonl"), "--crawl-delay", "1")
    sources = load_sources(site.sources_yaml(tmp_path / "sources.yaml", min_host_interval=0))

    crawl(database_url, sources, options=CrawlOptions(workers=4))

    times = sorted(r["time"] for r in site.log())
    assert len(times) >= 8
    gaps = [b - a for a, b in pairwise(times)]
    # newsim stamps a request when it answers; allow for clock granularity only
    assert min(gaps) >= 0.95, gaps


def test_without_network_the_crawl_ends_with_a_per_source_error_summary(database_url, tmp_path):
    sources = tmp_path / "offline.yaml"
    sources.write_text(
        "sources:\n"
        "  - name: Báo Ngoại Tuyến\n    homepage: https://baongoaituyen.invalid/\n"
        "    feeds: [https://baongoaituyen.invalid/rss/home.rss]\n"
        "  - name: Tin Không Mạng\n    homepage: https://tinkhongmang.invalid/\n"
        "    feeds: [https://tinkhongmang.invalid/rss/a.rss, https://tinkhongmang.invalid/b.rss]\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "crawl", "--sources", str(sources)],
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3 failed" in result.stderr
    assert "Báo Ngoại Tuyến  0/1 feeds ok (dns_error ×1)" in result.stderr
    assert "Tin Không Mạng   0/2 feeds ok (dns_error ×2)" in result.stderr
    with psycopg.connect(database_url) as conn:
        errors = [e for (e,) in conn.execute("SELECT last_error FROM news.feeds")]
    assert len(errors) == 3 and all(e.startswith("dns_error") for e in errors)


def test_an_absurdly_long_link_in_a_feed_is_recorded_and_the_rest_crawled(
    httpserver, database_url, tmp_path
):
    """Postgres cannot index a 6 kB URL: the link is recorded as bad_url under its first
    characters instead of failing the feed's transaction (and with it the crawl)."""
    base = f"http://127.0.0.1:{httpserver.port}"
    noise = random.Random(7).randbytes(3000).hex()  # incompressible, as an index entry
    long_link = f"{base}/tin/{noise}.html"
    feed = (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Tin</title>'
        f"<item><title>Buýt điện</title><link>{base}/tin/buyt-dien.html</link></item>"
        f"<item><title>Dài</title><link>{long_link}</link></item>"
        "</channel></rss>"
    )
    page = (FIXTURES / "pages" / "express_figure.html").read_text(encoding="utf-8")
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/rss").respond_with_data(feed, content_type="application/rss+xml")
    httpserver.expect_request("/tin/buyt-dien.html").respond_with_data(
        page, content_type="text/html; charset=utf-8"
    )
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "settings:\n  allow_hosts: [127.0.0.1]\n  min_host_interval: 0\n"
        f"sources:\n  - name: Báo Thử\n    homepage: {base}/\n    feeds: [{base}/rss]\n",
        encoding="utf-8",
    )
    summary = crawl(database_url, load_sources(sources), options=CrawlOptions(processes=0))
    assert (summary.articles_stored, summary.rejected_urls) == (1, 1), summary.format()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT state, error_reason, length(url) FROM news.frontier ORDER BY id"
        ).fetchall()
    article_url = f"{base}/tin/buyt-dien.html"
    assert rows == [("extracted", None, len(article_url)), ("gone", "bad_url", 500)]
