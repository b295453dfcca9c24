-- 001_core: the crawl side of the pipeline.
--
-- Data flows one way: feeds -> frontier -> raw_pages -> articles.
-- Every URL a feed mentions gets exactly one frontier row, and that row always
-- says where the URL stands (see frontier.state), so nothing is lost silently.

CREATE SCHEMA IF NOT EXISTS news;

-- Publishers, as listed in the sources file (pipeline/sources.yaml or --sources).
CREATE TABLE news.sources (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    homepage    text NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- RSS feeds and sitemaps. etag/last_modified make the next poll a cheap conditional GET.
CREATE TABLE news.feeds (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id            bigint NOT NULL REFERENCES news.sources ON DELETE CASCADE,
    url                  text NOT NULL UNIQUE,
    kind                 text NOT NULL DEFAULT 'rss' CHECK (kind IN ('rss', 'sitemap')),
    etag                 text,
    last_modified        text,
    last_polled_at       timestamptz,
    last_success_at      timestamptz,
    last_status          integer,
    last_error           text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    items_seen           bigint NOT NULL DEFAULT 0
);

-- One row per host: the robots.txt we obey and when the host may next be asked.
-- Crawl workers lock a host's row while they fetch from it, which keeps them
-- polite to that host even when many workers run in parallel.
CREATE TABLE news.hosts (
    host              text PRIMARY KEY,
    robots_txt        text,
    robots_status     integer,
    robots_fetched_at timestamptz,
    crawl_delay       real,
    next_fetch_at     timestamptz NOT NULL DEFAULT '-infinity'
);

-- The frontier: every discovered URL and where it stands.
--   discovered  waiting to be fetched (or re-tried: see next_attempt_at)
--   fetched     raw page stored, waiting for extraction
--   extracted   fetched, and an article was stored (article_id)
--   not_article fetched, but the page is a listing/home/data page
--   duplicate   fetched, but its canonical URL is an article we already have
--   failed      a temporary failure; retried after next_attempt_at until attempts run out
--   gone        a permanent failure (404, robots.txt disallows, unsafe address, too large, ...)
CREATE TABLE news.frontier (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text NOT NULL UNIQUE,
    host            text NOT NULL,
    source_id       bigint REFERENCES news.sources ON DELETE SET NULL,
    feed_id         bigint REFERENCES news.feeds ON DELETE SET NULL,
    discovered_via  text NOT NULL DEFAULT 'rss',
    title_hint      text,
    published_hint  timestamptz,
    state           text NOT NULL DEFAULT 'discovered'
                    CHECK (state IN ('discovered', 'fetched', 'extracted', 'not_article',
                                     'duplicate', 'failed', 'gone')),
    attempts        integer NOT NULL DEFAULT 0,
    error_reason    text,
    error_detail    text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    http_status     integer,
    final_url       text,
    canonical_url   text,
    article_id      bigint,
    discovered_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The claim reads a host's oldest due URL straight off this index.
CREATE INDEX frontier_due ON news.frontier (host, next_attempt_at, id)
    WHERE state IN ('discovered', 'failed');
CREATE INDEX frontier_fetched ON news.frontier (id) WHERE state = 'fetched';
CREATE INDEX frontier_canonical ON news.frontier (canonical_url);

-- Raw HTML, compressed, so extraction can be re-run without fetching again.
CREATE TABLE news.raw_pages (
    frontier_id   bigint PRIMARY KEY REFERENCES news.frontier ON DELETE CASCADE,
    final_url     text NOT NULL,
    http_status   integer NOT NULL,
    content_type  text,
    charset       text,
    etag          text,
    last_modified text,
    html_gzip     bytea NOT NULL,
    html_bytes    integer NOT NULL,
    fetched_at    timestamptz NOT NULL DEFAULT now()
);
-- Already gzip-compressed: stored out of line without a second (futile) compression.
ALTER TABLE news.raw_pages ALTER COLUMN html_gzip SET STORAGE EXTERNAL;

-- Articles, one per canonical URL. `stage` says how far downstream processing got:
--   extracted -> processed (NLP done) -> clustered (assigned to a story).
CREATE TABLE news.articles (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url           text NOT NULL UNIQUE,
    source_id     bigint REFERENCES news.sources ON DELETE SET NULL,
    publisher     text NOT NULL,
    external_id   text,
    title         text NOT NULL,
    lead          text,
    body          text NOT NULL,
    author        text,
    published_at  timestamptz,
    language      text,
    frontier_id   bigint REFERENCES news.frontier ON DELETE SET NULL,
    fetched_at    timestamptz,
    extracted_at  timestamptz NOT NULL DEFAULT now(),
    stage         text NOT NULL DEFAULT 'extracted'
                  CHECK (stage IN ('extracted', 'processed', 'clustered'))
);
CREATE INDEX articles_published_at ON news.articles (published_at);
CREATE INDEX articles_stage ON news.articles (stage, id) WHERE stage <> 'clustered';

ALTER TABLE news.frontier
    ADD CONSTRAINT frontier_article_fk FOREIGN KEY (article_id)
    REFERENCES news.articles ON DELETE SET NULL;
