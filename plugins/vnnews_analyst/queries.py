"""What the analyst pages read: one SQL constant and one small dataclass per view.

Days are Vietnam calendar days (the readers' day); the stored times carry
their offsets, so a day is a half-open range of instants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import class_row

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")

#: Stories listed for a day, the busiest first: a day rarely has more than a
#: few dozen stories with several articles, and a longer page is not read.
STORIES_PER_DAY = 50


@dataclass
class Article:
    story_id: int
    article_id: int
    title: str
    url: str
    publisher: str
    published_at: datetime | None


@dataclass
class Story:
    story_id: int
    label: str
    key_terms: list[str]
    top_entities: list[dict[str, Any]]
    first_published_at: datetime | None
    last_published_at: datetime | None
    article_count: int
    outlet_count: int
    day_articles: int = 0
    articles: list[Article] = field(default_factory=list)

    @property
    def terms(self) -> list[str]:
        """Key terms that do not repeat a top entity's name ("quảng bình" next to Quảng Bình)."""
        names = {str(e.get("name", "")).casefold() for e in self.top_entities}
        return [t for t in self.key_terms if t.casefold() not in names]

    @property
    def outlets(self) -> list[str]:
        """The outlets among ``articles``, in order of first appearance."""
        return list(dict.fromkeys(a.publisher for a in self.articles))


@dataclass
class TimelineDay:
    day: date
    articles: int
    outlets: int
    first_published_at: datetime
    last_published_at: datetime


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A Vietnam calendar day as [start, end) instants."""
    start = datetime.combine(day, time(), tzinfo=VIETNAM)
    return start, start + timedelta(days=1)


def today() -> date:
    return datetime.now(VIETNAM).date()


STORIES_OF_DAY = """
SELECT s.story_id, s.label, s.key_terms, s.top_entities, s.first_published_at,
       s.last_published_at, s.article_count, s.outlet_count, count(*) AS day_articles
  FROM news.articles AS a
  JOIN news.story_articles AS sa ON sa.article_id = a.id
  JOIN news.v_stories AS s ON s.story_id = sa.story_id
 WHERE a.published_at >= %(start)s AND a.published_at < %(end)s
 GROUP BY s.story_id, s.label, s.key_terms, s.top_entities, s.first_published_at,
          s.last_published_at, s.article_count, s.outlet_count
 ORDER BY day_articles DESC, count(DISTINCT a.publisher) DESC, s.last_published_at DESC,
          s.story_id
 LIMIT %(limit)s
"""

ARTICLES_OF_DAY = """
SELECT sa.story_id, a.id AS article_id, a.title, a.url, a.publisher, a.published_at
  FROM news.story_articles AS sa
  JOIN news.articles AS a ON a.id = sa.article_id
 WHERE sa.story_id = ANY(%(stories)s)
   AND a.published_at >= %(start)s AND a.published_at < %(end)s
 ORDER BY sa.story_id, a.published_at, a.id
"""


def stories_of_day(conn: psycopg.Connection, day: date) -> list[Story]:
    """The stories with articles published on ``day``, each with those articles."""
    start, end = day_bounds(day)
    with conn.cursor(row_factory=class_row(Story)) as cur:
        stories = cur.execute(
            STORIES_OF_DAY, {"start": start, "end": end, "limit": STORIES_PER_DAY}
        ).fetchall()
    by_id = {s.story_id: s for s in stories}
    with conn.cursor(row_factory=class_row(Article)) as cur:
        params = {"stories": list(by_id), "start": start, "end": end}
        for article in cur.execute(ARTICLES_OF_DAY, params):
            by_id[article.story_id].articles.append(article)
    return stories


RESOLVE_STORY = "SELECT news.resolve_story(%s)"

STORY = """
SELECT story_id, label, key_terms, top_entities, first_published_at, last_published_at,
       article_count, outlet_count
  FROM news.v_stories
 WHERE story_id = %s
"""

STORY_ARTICLES = """
SELECT story_id, article_id, title, url, publisher, published_at
  FROM news.v_story_articles
 WHERE story_id = %s
 ORDER BY published_at NULLS LAST, article_id
"""

TIMELINE = """
SELECT day, articles, outlets, first_published_at, last_published_at
  FROM news.v_story_timeline
 WHERE story_id = %s
 ORDER BY day
"""


def resolve_story(conn: psycopg.Connection, story_id: int) -> int | None:
    """The live id of a story (a merged story's id leads to the survivor); None if unknown."""
    row = conn.execute(RESOLVE_STORY, (story_id,)).fetchone()
    return row[0] if row else None


def story(conn: psycopg.Connection, story_id: int) -> tuple[Story, list[TimelineDay]] | None:
    """A live story with all its articles in time order, and its day-by-day timeline."""
    with conn.cursor(row_factory=class_row(Story)) as cur:
        found = cur.execute(STORY, (story_id,)).fetchone()
    if found is None:
        return None
    with conn.cursor(row_factory=class_row(Article)) as cur:
        found.articles = cur.execute(STORY_ARTICLES, (story_id,)).fetchall()
    with conn.cursor(row_factory=class_row(TimelineDay)) as cur:
        timeline = cur.execute(TIMELINE, (story_id,)).fetchall()
    return found, timeline
