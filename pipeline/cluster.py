"""Online story clustering: each processed article joins an active story or opens one.

Articles are taken one at a time in publication order. For each:

1. Features come from the stored NLP output (``news.article_nlp``: segmented
   title, lead and body) and entity mentions; nothing is re-analysed here.
   Terms are the lower-cased segmented words (``_`` joins syllables), with
   punctuation and the small ``STOP_WORDS`` list skipped.
2. Document frequencies are updated incrementally in ``news.term_df`` /
   ``news.entity_df`` and the article's TF-IDF vectors are built with the
   frequencies as they stand (no refit over the corpus, ever).
3. A near-duplicate (the same wire text republished) is looked up through
   MinHash LSH buckets; the link is recorded in ``story_articles.duplicate_of``
   and the article joins its original's story if that story is in the window
   and its datelines (below) allow it (a republication weeks later, or a
   templated daily report, is linked but placed on its own).
4. Otherwise candidate stories come from ``news.story_postings`` (a story's top
   terms and entities with its last activity), restricted to the time window,
   so the cost per article does not grow with the number of stories stored.
   Each candidate is scored (``score``): TF-IDF cosine of the text with the
   story centroid, cosine of the titles, cosine of the entities, minus a time
   penalty and a penalty growing with the log of the story's size (a broad
   centroid is weak evidence; this is what keeps topics from chaining into
   mega-stories). A story whose headlines carry a dateline for another day
   ("Sáng 22/10: ..." against "Sáng 23/10: ...") is not a candidate: that is
   the next day's report. The best at or above ``JOIN_THRESHOLD`` is joined,
   else the article opens a new story whose id is the article's id.
5. A second candidate that also clears the join threshold and whose centroid
   matches the joined story's (``MERGE_THRESHOLD``) is merged into it; the
   merged id stays resolvable (``stories.merged_into``, ``news.resolve_story``).

Everything for one article happens in one transaction that also moves it to
stage 'clustered', under a session advisory lock (one writer at a time), so a
crash loses nothing and a re-run gives the same stories.

Undated articles (no published_at) are placed by fetch time; articles with
neither are clustered after all dated ones and only join a story as a
near-duplicate: without a time they cannot be put in any window, so they open
their own story rather than be attached by topic alone. An article with an
empty body is scored with its title cosine standing in for the text cosine
(its title-only text vector would always look unlike body centroids).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

# --- parameters -------------------------------------------------------------------
# Chosen on bench/cluster_quality.py (VMDS, 628 articles, 199 gold stories) and
# checked on tuoitre2024 for giant stories; re-run both after changing any of them.

#: A story takes new articles while its last article is at most this far from
#: the new one. 90% of the VMDS gold stories span under 1.2 days; 3 days keeps
#: them whole while an old story on the same subject is not revived.
#: bench/cluster_quality.py --sweep, F1 at 1 / 2 / 3 / 5 days: 0.944 / 0.949 / 0.950 / 0.949.
WINDOW = timedelta(days=3)

#: Title words count this many times in the text vector: the headline states
#: the event (prototype on VMDS, text cosine alone: F1 0.920 at 1, 0.926 at 3 and 6).
TITLE_BOOST = 3

#: Weights of title and entity cosine next to the text cosine (weight 1) and of
#: the time penalty (per window of distance). Small: the text cosine carries
#: most of the signal. bench/cluster_quality.py --sweep at the chosen threshold,
#: F1 with title weight 0 / 0.1 / 0.2 / 0.3: 0.944 / 0.949 / 0.950 / 0.948;
#: entity weight 0 / 0.1 / 0.2 / 0.4: 0.944 / 0.949 / 0.950 / 0.945; time weight
#: 0 / 0.05 / 0.2: 0.949 / 0.950 / 0.950 (VMDS stories are tight in time, so the
#: penalty only breaks near-ties at the window's edge).
TITLE_WEIGHT = 0.2
ENTITY_WEIGHT = 0.2
TIME_WEIGHT = 0.05

#: The bar rises with the log of the story's size: a bigger story's centroid is
#: broader (its shared vocabulary dominates, the specifics of each article fade),
#: so the same cosine is weaker evidence. Without it topics chain into rolling
#: mega-stories (tuoitre2024: one of 52 articles on a week of Russia-Ukraine
#: news; with it the largest is 12 and reads as one story). bench/cluster_quality.py
#: --sweep at the chosen threshold, F1 with 0 / 0.05 / 0.1 / 0.15: 0.921 / 0.938 /
#: 0.950 / 0.936; without it the best threshold (0.275) reaches only 0.933.
SIZE_WEIGHT = 0.1

#: Join the best candidate at or above this combined score, else open a story.
#: bench/cluster_quality.py sensitivity table: F1 0.937 / 0.947 / 0.950 / 0.942 /
#: 0.931 at 0.15 / 0.175 / 0.2 / 0.225 / 0.25; chosen at the maximum.
JOIN_THRESHOLD = 0.2

#: Merge a second qualifying story into the joined one when their centroids
#: score at least this (stories about one event found separately). Merges are
#: rare by design (the size penalty applies to them too): VMDS F1 is 0.950 with
#: merges at 0.3, 0.4, 0.5 or none; tuoitre2024 has none at 0.5.
MERGE_THRESHOLD = 0.5

#: Kept features per story centroid: beyond ~100 terms the weights are noise,
#: and the jsonb stays a few kB.
TEXT_TOP_K = 100
TITLE_TOP_K = 40
ENTITY_TOP_K = 30

#: Postings per story (its heaviest terms; all its top entities) and query
#: features per article: enough to find every story the article shares its
#: key terms with, few enough that a lookup reads a few hundred index rows.
POSTING_TERMS = 30
POSTING_ENTITIES = 10
QUERY_TERMS = 20
MAX_CANDIDATES = 40

#: Near-duplicates: MinHash over word 3-shingles, 16 bands of 4 rows
#: (a pair at Jaccard 0.7 shares a bucket with probability 0.99). No VMDS pair
#: of different stories exceeds 0.28; wire copies with an edited lead stay above 0.7.
SHINGLE_WORDS = 3
MINHASH_BANDS = 16
MINHASH_ROWS = 4
NEAR_DUP_JACCARD = 0.7
#: Bodies with fewer shingles than this are too short to call a copy.
MIN_SHINGLES = 20

#: Key terms and entities shown on a story.
KEY_TERMS = 10
TOP_ENTITIES = 5

#: Claimed article ids per queue read (each article still commits on its own).
CLAIM_BATCH = 200

#: One clustering writer at a time (any constant; this spells "story").
CLUSTER_LOCK_ID = 0x73746F7279

#: Function words skipped before TF-IDF (IDF alone leaves them a small weight
#: that adds up over long bodies). Segmented form, lower case.
_STOP_WORDS_TEXT = """
và của là có được các những cho với trong đã này không một khi cũng để thì đến từ tại
theo về ra vào sẽ đang như nhiều sau trên bị do nên mà hay hoặc lại còn vẫn đó nay rằng
nhưng chỉ rất đều cho_biết người
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

# Bin values are the hash's top bits (below 2^58 for 64 bins, so they fit a
# bigint); borrowed values are shifted by a large odd step per bin of distance.
_BIN_RANGE = 1 << 58
_DENSIFY_STEP = 0x9E3779B97F4A7C1 % _BIN_RANGE
_EMPTY_BIN = _BIN_RANGE - 1

Vector = dict[str, float]


@dataclass(frozen=True)
class ClusterSettings:
    """The tunables in one value, so benches and tests can vary them."""

    window: timedelta = WINDOW
    join_threshold: float = JOIN_THRESHOLD
    merge_threshold: float = MERGE_THRESHOLD
    title_weight: float = TITLE_WEIGHT
    entity_weight: float = ENTITY_WEIGHT
    time_weight: float = TIME_WEIGHT
    size_weight: float = SIZE_WEIGHT
    near_dup_jaccard: float = NEAR_DUP_JACCARD


# --- features -----------------------------------------------------------------------


def terms(segmented: str | None) -> list[str]:
    """TF-IDF terms of a segmented text: lower-cased words, no punctuation, no stop words."""
    out = []
    for token in (segmented or "").split():
        word = token.lower()
        if word in STOP_WORDS or not any(ch.isalnum() for ch in word):
            continue
        out.append(word)
    return out


def shingles(segmented: str | None) -> set[str]:
    """Word 3-shingles of the body (stop words kept: copies share them too)."""
    words = [t.lower() for t in (segmented or "").split() if any(ch.isalnum() for ch in t)]
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def minhash(shingle_set: Iterable[str]) -> list[int]:
    """One-permutation MinHash with densification (Shrivastava & Li, 2014).

    Each shingle is hashed once; its low bits pick one of the signature's bins
    and the bin keeps the least remaining bits. An empty bin borrows from the
    next non-empty one (cyclically), shifted by the distance, so two documents
    agree on a bin with probability close to their Jaccard similarity, as with
    classic MinHash, at the cost of one hash per shingle instead of one per
    shingle and permutation (15 ms -> under 1 ms for a typical article).
    """
    size = MINHASH_BANDS * MINHASH_ROWS
    bins: list[int | None] = [None] * size
    for shingle in shingle_set:
        h = _hash64(shingle)
        index, value = h % size, h // size
        current = bins[index]
        if current is None or value < current:
            bins[index] = value
    if all(b is None for b in bins):
        return [_EMPTY_BIN] * size
    signature = []
    for index in range(size):
        distance = 0
        while bins[(index + distance) % size] is None:
            distance += 1
        borrowed = bins[(index + distance) % size]
        assert borrowed is not None
        signature.append(
            borrowed if distance == 0 else (borrowed + distance * _DENSIFY_STEP) % _BIN_RANGE
        )
    return signature


def band_buckets(signature: Sequence[int]) -> list[tuple[int, int]]:
    """(band, bucket) pairs: each band's rows hashed to a signed 64-bit key."""
    out = []
    for band in range(MINHASH_BANDS):
        rows = signature[band * MINHASH_ROWS : (band + 1) * MINHASH_ROWS]
        digest = hashlib.blake2b(struct.pack(f">{MINHASH_ROWS}Q", *rows), digest_size=8).digest()
        out.append((band, int.from_bytes(digest, "big", signed=True)))
    return out


def jaccard_estimate(a: Sequence[int], b: Sequence[int]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


@dataclass(frozen=True)
class Article:
    """What clustering reads about one processed article."""

    id: int
    publisher: str
    title: str
    published_at: datetime | None  # published_at, else fetched_at, else None
    title_terms: tuple[str, ...]
    body_terms: tuple[str, ...]  # lead + body
    entities: Mapping[int, int]  # entity id -> mentions
    body_shingles: frozenset[str]

    @property
    def has_body(self) -> bool:
        return bool(self.body_terms)


@dataclass(frozen=True)
class ArticleVectors:
    text: Vector
    title: Vector
    entity: Vector


def normalise(vector: Mapping[str, float]) -> Vector:
    norm = math.sqrt(sum(w * w for w in vector.values()))
    return {k: w / norm for k, w in vector.items()} if norm else {}


def cosine(unit: Mapping[str, float], other: Mapping[str, float]) -> float:
    """Cosine of a unit vector with any vector (story centroids are stored unnormalised)."""
    norm = math.sqrt(sum(w * w for w in other.values()))
    if not norm or not unit:
        return 0.0
    return sum(w * other.get(k, 0.0) for k, w in unit.items()) / norm


def idf(df: int, documents: int) -> float:
    """Smoothed IDF; ``df`` and ``documents`` both count the article being placed."""
    return math.log((documents + 1) / (df + 1)) + 1.0


def article_vectors(
    article: Article, term_df: Mapping[str, int], entity_df: Mapping[int, int], documents: int
) -> ArticleVectors:
    counts = Counter(article.body_terms)
    for term in article.title_terms:
        counts[term] += TITLE_BOOST
    text = {t: (1 + math.log(c)) * idf(term_df[t], documents) for t, c in counts.items()}
    title = {t: idf(term_df[t], documents) for t in set(article.title_terms)}
    entity = {
        str(e): (1 + math.log(c)) * idf(entity_df[e], documents)
        for e, c in article.entities.items()
    }
    return ArticleVectors(normalise(text), normalise(title), normalise(entity))


#: A calendar day, "22/10" or "5/12/2024", among a headline's first words: a
#: dateline ("Sáng 22/10: ...", "Giá vàng hôm nay 5/12 ..."). Daily reports
#: (markets, prices, weather) repeat their vocabulary every day, and their
#: datelines are what tells one day's report from the next. A day named
#: further on is usually an event's date ("... gặp ông Austin vào ngày 26/3"),
#: which articles on one story give differently, so it does not count.
DATELINE_DAY = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?:/\d{2,4})?(?![\d/])")
DATELINE_WORDS = 5


def dateline_days(title: str) -> frozenset[tuple[int, int]]:
    """The (day, month) pairs named in the headline's first DATELINE_WORDS words."""
    opening = " ".join(title.split()[:DATELINE_WORDS])
    return frozenset(
        (int(day), int(month))
        for day, month in DATELINE_DAY.findall(opening)
        if 1 <= int(day) <= 31 and 1 <= int(month) <= 12
    )


def other_days(a: frozenset[tuple[int, int]], b: frozenset[tuple[int, int]]) -> bool:
    """True when both sides have datelines and no day in common: two days' reports."""
    return bool(a and b and not a & b)


# --- scoring ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryState:
    """A story as candidate or join target: its centroids and time span."""

    id: int
    text: Vector
    title: Vector
    entity: Vector
    first_published_at: datetime | None
    last_published_at: datetime | None
    article_count: int
    label_score: float


@dataclass(frozen=True)
class Score:
    total: float
    text: float
    title: float
    entity: float
    gap_hours: float

    def detail(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def time_gap(moment: datetime | None, story: StoryState) -> timedelta:
    """Distance from ``moment`` to the story's [first, last] span (zero inside it)."""
    if moment is None or story.first_published_at is None or story.last_published_at is None:
        return timedelta(0)
    if moment < story.first_published_at:
        return story.first_published_at - moment
    if moment > story.last_published_at:
        return moment - story.last_published_at
    return timedelta(0)


def score(
    vectors: ArticleVectors,
    story: StoryState,
    gap: timedelta,
    settings: ClusterSettings,
    *,
    has_body: bool = True,
) -> Score:
    """Weighted mean of text, title and entity cosines, minus the time and size penalties.

    Without a body the title stands in for the text (a title-only vector
    against a body centroid would always look dissimilar). Entities count only
    when both sides have some: missing evidence is not disagreement.
    """
    title = cosine(vectors.title, story.title)
    text = cosine(vectors.text, story.text) if has_body else title
    entity = cosine(vectors.entity, story.entity)
    parts = [(1.0, text), (settings.title_weight, title)]
    if vectors.entity and story.entity:
        parts.append((settings.entity_weight, entity))
    mean = sum(w * v for w, v in parts) / sum(w for w, _ in parts)
    penalty = settings.time_weight * (gap / settings.window)
    penalty += settings.size_weight * math.log(max(story.article_count, 1))
    return Score(mean - penalty, text, title, entity, gap.total_seconds() / 3600)


def story_similarity(a: StoryState, b: StoryState, settings: ClusterSettings) -> float:
    """The combined score between two centroids (for merges).

    The size penalty is the larger story's, as if the smaller joined it whole:
    without it merges rebuild the rolling mega-stories the penalty keeps apart
    (tuoitre2024: a 23-article Russia-Ukraine story assembled by 5 merges).
    """
    vectors = ArticleVectors(normalise(a.text), normalise(a.title), normalise(a.entity))
    larger = replace(b, article_count=max(a.article_count, b.article_count))
    return score(vectors, larger, timedelta(0), settings).total


# --- SQL ----------------------------------------------------------------------------

LOCK = "SELECT pg_advisory_lock(%s)"

# Each article is one transaction; waiting for its WAL flush would make the
# flush the cost of clustering. Without the wait a server crash can forget the
# last few commits, which is harmless: those articles are still 'processed'
# (atomically with everything else) and are simply placed again.
ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"
UNLOCK = "SELECT pg_advisory_unlock(%s)"

CLAIM_QUEUE = """
SELECT id FROM news.articles
WHERE stage = 'processed'
ORDER BY (published_at IS NULL AND fetched_at IS NULL), coalesce(published_at, fetched_at), id
LIMIT %s
"""

COUNT_PENDING = "SELECT count(*) FROM news.articles WHERE stage = 'processed'"

LOAD_ARTICLE = """
SELECT a.stage, a.publisher, a.title, coalesce(a.published_at, a.fetched_at),
       n.segmented_title, n.segmented_lead, n.segmented,
       EXISTS (SELECT 1 FROM news.story_articles AS sa WHERE sa.article_id = a.id)
FROM news.articles AS a
LEFT JOIN news.article_nlp AS n ON n.article_id = a.id
WHERE a.id = %s
FOR UPDATE OF a
"""

LOAD_ENTITIES = """
SELECT entity_id, count(*) FROM news.entity_mentions
WHERE article_id = %s
GROUP BY entity_id
ORDER BY entity_id
"""

MARK_CLUSTERED = "UPDATE news.articles SET stage = 'clustered' WHERE id = %s"

COUNT_DOCUMENT = """
UPDATE news.cluster_counters SET value = value + 1 WHERE name = 'documents' RETURNING value
"""

BUMP_TERM_DF = """
INSERT INTO news.term_df AS d (term, df)
SELECT t, 1 FROM unnest(%s::text[]) AS t ORDER BY t
ON CONFLICT (term) DO UPDATE SET df = d.df + 1
RETURNING term, df
"""

BUMP_ENTITY_DF = """
INSERT INTO news.entity_df AS d (entity_id, df)
SELECT e, 1 FROM unnest(%s::bigint[]) AS e ORDER BY e
ON CONFLICT (entity_id) DO UPDATE SET df = d.df + 1
RETURNING entity_id, df
"""

FIND_DUPLICATES = """
SELECT DISTINCT m.article_id, m.signature, sa.story_id
FROM news.minhash_bands AS b
JOIN news.article_minhash AS m ON m.article_id = b.article_id
JOIN news.story_articles AS sa ON sa.article_id = b.article_id
WHERE (b.band, b.bucket) IN (SELECT * FROM unnest(%s::smallint[], %s::bigint[]))
ORDER BY m.article_id
"""

SAVE_SIGNATURE = "INSERT INTO news.article_minhash (article_id, signature) VALUES (%s, %s)"

SAVE_BANDS = """
INSERT INTO news.minhash_bands (band, bucket, article_id)
SELECT band, bucket, %s FROM unnest(%s::smallint[], %s::bigint[]) AS u(band, bucket)
ON CONFLICT DO NOTHING
"""

FIND_CANDIDATES = """
SELECT story_id
FROM news.story_postings
WHERE feature = ANY(%s) AND last_active >= %s
GROUP BY story_id
ORDER BY count(*) DESC, story_id
LIMIT %s
"""

MEMBER_TITLES = """
SELECT sa.story_id, a.title
FROM news.story_articles AS sa JOIN news.articles AS a ON a.id = sa.article_id
WHERE sa.story_id = ANY(%s)
"""

STORY_COLUMNS = """
id, text_vector, title_vector, entity_vector, first_published_at, last_published_at,
article_count, label_score
"""

LOAD_STORIES = (
    "SELECT" + STORY_COLUMNS + "FROM news.stories WHERE id = ANY(%s) AND merged_into IS NULL"
    " ORDER BY id FOR UPDATE"
)

LOAD_STORY = "SELECT" + STORY_COLUMNS + "FROM news.stories WHERE id = news.resolve_story(%s)"

INSERT_STORY = """
INSERT INTO news.stories (id, label, label_article_id, label_score)
VALUES (%s, %s, %s, 0)
"""

UPDATE_STORY = """
UPDATE news.stories SET
    text_vector = %(text)s, title_vector = %(title)s, entity_vector = %(entity)s,
    key_terms = %(key_terms)s,
    top_entities = coalesce((
        SELECT jsonb_agg(jsonb_build_object('id', e.id, 'name', e.canonical_name, 'type', e.type)
                         ORDER BY k.ord)
        FROM unnest(%(top_entities)s::bigint[]) WITH ORDINALITY AS k(id, ord)
        JOIN news.entities AS e ON e.id = k.id), '[]'),
    first_published_at = %(first)s, last_published_at = %(last)s,
    article_count = (SELECT count(*) FROM news.story_articles WHERE story_id = %(id)s),
    outlet_count = (SELECT count(DISTINCT a.publisher)
                    FROM news.story_articles AS sa JOIN news.articles AS a ON a.id = sa.article_id
                    WHERE sa.story_id = %(id)s),
    label = coalesce(%(label)s, label),
    label_article_id = coalesce(%(label_article_id)s, label_article_id),
    label_score = %(label_score)s,
    updated_at = now()
WHERE id = %(id)s
"""

INSERT_ASSIGNMENT = """
INSERT INTO news.story_articles (article_id, story_id, similarity, duplicate_of, duplicate_jaccard)
VALUES (%s, %s, %s, %s, %s)
"""

INSERT_EVENT = """
INSERT INTO news.story_events (story_id, event, article_id, other_story_id, detail)
VALUES (%s, %s, %s, %s, %s)
"""

DELETE_POSTINGS = "DELETE FROM news.story_postings WHERE story_id = %s"

INSERT_POSTINGS = """
INSERT INTO news.story_postings (feature, story_id, last_active)
SELECT f, %s, %s FROM unnest(%s::text[]) AS f
"""

MOVE_ARTICLES = "UPDATE news.story_articles SET story_id = %s WHERE story_id = %s"

MARK_MERGED = """
UPDATE news.stories SET merged_into = %(survivor)s, updated_at = now()
WHERE id = %(merged)s OR merged_into = %(merged)s
"""

CLEAR_MERGED_STATE = """
UPDATE news.stories SET text_vector = '{}', title_vector = '{}', entity_vector = '{}',
       article_count = 0, outlet_count = 0
WHERE id = %s
"""


# --- storage helpers ------------------------------------------------------------------


def _load_article(conn: psycopg.Connection, article_id: int) -> tuple[Article, str, bool] | None:
    row = conn.execute(LOAD_ARTICLE, (article_id,)).fetchone()
    if row is None:
        return None
    stage, publisher, title, moment, seg_title, seg_lead, seg_body, assigned = row
    entities = dict(conn.execute(LOAD_ENTITIES, (article_id,)).fetchall())
    article = Article(
        id=article_id,
        publisher=publisher,
        title=title,
        published_at=moment,
        title_terms=tuple(terms(seg_title)),
        body_terms=tuple(terms(seg_lead) + terms(seg_body)),
        entities=entities,
        body_shingles=frozenset(shingles(seg_body)),
    )
    return article, stage, assigned


def _count_frequencies(
    conn: psycopg.Connection, article: Article
) -> tuple[dict[str, int], dict[int, int], int]:
    documents = conn.execute(COUNT_DOCUMENT).fetchone()[0]
    unique_terms = sorted(set(article.title_terms) | set(article.body_terms))
    term_df = dict(conn.execute(BUMP_TERM_DF, (unique_terms,)).fetchall()) if unique_terms else {}
    entity_ids = sorted(article.entities)
    entity_df = dict(conn.execute(BUMP_ENTITY_DF, (entity_ids,)).fetchall()) if entity_ids else {}
    return term_df, entity_df, documents


def _story_state(row: Sequence[Any]) -> StoryState:
    return StoryState(
        id=row[0],
        text=row[1],
        title=row[2],
        entity=row[3],
        first_published_at=row[4],
        last_published_at=row[5],
        article_count=row[6],
        label_score=row[7],
    )


def _top(vector: Mapping[str, float], k: int) -> Vector:
    """The k heaviest features, ties broken by name so the result is deterministic."""
    ranked = sorted(vector.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return {key: round(weight, 6) for key, weight in ranked}


def _add(a: Mapping[str, float], b: Mapping[str, float], k: int) -> Vector:
    total = dict(a)
    for key, weight in b.items():
        total[key] = total.get(key, 0.0) + weight
    return _top(total, k)


def _span(
    a: datetime | None, b: datetime | None, pick: Callable[[list[datetime]], datetime]
) -> datetime | None:
    present = [m for m in (a, b) if m is not None]
    return pick(present) if present else None


def _postings(story: StoryState) -> list[str]:
    term_features = ["t:" + t for t in list(_top(story.text, POSTING_TERMS))]
    entity_features = ["e:" + e for e in list(_top(story.entity, POSTING_ENTITIES))]
    return term_features + entity_features


def _datelines(
    conn: psycopg.Connection, days: frozenset[tuple[int, int]], story_ids: Sequence[int]
) -> dict[int, frozenset[tuple[int, int]]]:
    """Each story's dateline days, read from its members' headlines; only looked up
    when the article has a dateline itself (else no story's can matter)."""
    found: dict[int, frozenset[tuple[int, int]]] = dict.fromkeys(story_ids, frozenset())
    if days and story_ids:
        for story_id, title in conn.execute(MEMBER_TITLES, (list(story_ids),)):
            found[story_id] |= dateline_days(title)
    return found


def _query_features(article: Article, vectors: ArticleVectors) -> list[str]:
    heaviest = list(_top(vectors.text, QUERY_TERMS))
    features = {"t:" + t for t in heaviest} | {"t:" + t for t in article.title_terms}
    features |= {"e:" + e for e in vectors.entity}
    return sorted(features)


def _save_story(
    conn: psycopg.Connection,
    story: StoryState,
    *,
    label: tuple[str, int] | None = None,
) -> None:
    """Write a story's centroid and summary columns and refresh its postings."""
    conn.execute(
        UPDATE_STORY,
        {
            "id": story.id,
            "text": Jsonb(story.text),
            "title": Jsonb(story.title),
            "entity": Jsonb(story.entity),
            "key_terms": [t.replace("_", " ") for t in _top(story.text, KEY_TERMS)],
            "top_entities": [int(e) for e in _top(story.entity, TOP_ENTITIES)],
            "first": story.first_published_at,
            "last": story.last_published_at,
            "label": label[0] if label else None,
            "label_article_id": label[1] if label else None,
            "label_score": story.label_score,
        },
    )
    conn.execute(DELETE_POSTINGS, (story.id,))
    if story.last_published_at is not None:
        conn.execute(INSERT_POSTINGS, (story.id, story.last_published_at, _postings(story)))


# --- the assignment of one article ------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    article_id: int
    story_id: int
    action: str  # created | joined | duplicate | skipped
    score: float
    merged: tuple[int, ...] = ()


def _single(article: Article, vectors: ArticleVectors) -> StoryState:
    """One article as a story of its own (vectors truncated like a centroid)."""
    return StoryState(
        id=article.id,
        text=_top(vectors.text, TEXT_TOP_K),
        title=_top(vectors.title, TITLE_TOP_K),
        entity=_top(vectors.entity, ENTITY_TOP_K),
        first_published_at=article.published_at,
        last_published_at=article.published_at,
        article_count=1,
        label_score=0.0,
    )


def _combine(story: StoryState, other: StoryState) -> StoryState:
    """``story`` with ``other``'s articles added: centroids summed, spans joined."""
    return StoryState(
        id=story.id,
        text=_add(story.text, other.text, TEXT_TOP_K),
        title=_add(story.title, other.title, TITLE_TOP_K),
        entity=_add(story.entity, other.entity, ENTITY_TOP_K),
        first_published_at=_span(story.first_published_at, other.first_published_at, min),
        last_published_at=_span(story.last_published_at, other.last_published_at, max),
        article_count=story.article_count + other.article_count,
        label_score=story.label_score,
    )


def _create_story(
    conn: psycopg.Connection,
    article: Article,
    vectors: ArticleVectors,
    reason: str,
    best: tuple[int, Score] | None,
    duplicate: tuple[int, float] | None = None,
) -> Assignment:
    conn.execute(INSERT_STORY, (article.id, article.title, article.id))
    story = _single(article, vectors)
    dup_id, dup_jaccard = duplicate if duplicate else (None, None)
    conn.execute(INSERT_ASSIGNMENT, (article.id, story.id, 1.0, dup_id, dup_jaccard))
    _save_story(conn, story)
    detail: dict[str, Any] = {"reason": reason}
    if best is not None:
        detail |= {"best_story": best[0], "best_score": round(best[1].total, 4)}
    if duplicate is not None:
        detail |= {"duplicate_of": dup_id, "jaccard": round(duplicate[1], 4)}
    conn.execute(INSERT_EVENT, (story.id, "created", article.id, None, Jsonb(detail)))
    return Assignment(article.id, story.id, "created", 1.0)


def _join_story(
    conn: psycopg.Connection,
    story: StoryState,
    article: Article,
    vectors: ArticleVectors,
    similarity: float,
    detail: dict[str, Any],
    duplicate: tuple[int, float] | None = None,
) -> StoryState:
    grown = _combine(story, _single(article, vectors))
    label = None
    if duplicate is None and similarity > story.label_score:
        # The most typical member's headline: the one that matched its story best
        # (copies are left out: repeating a text is not being typical).
        label = (article.title, article.id)
        grown = StoryState(**{**grown.__dict__, "label_score": similarity})
    dup_id, dup_jaccard = duplicate if duplicate else (None, None)
    conn.execute(INSERT_ASSIGNMENT, (article.id, story.id, similarity, dup_id, dup_jaccard))
    _save_story(conn, grown, label=label)
    conn.execute(INSERT_EVENT, (story.id, "article_added", article.id, None, Jsonb(detail)))
    return grown


def _merge(
    conn: psycopg.Connection, a: StoryState, b: StoryState, detail: dict[str, Any]
) -> tuple[StoryState, int]:
    """Merge the smaller story into the larger (older on ties); returns (survivor, merged id)."""
    survivor, merged = (a, b) if (-a.article_count, a.id) <= (-b.article_count, b.id) else (b, a)
    combined = _combine(survivor, merged)
    conn.execute(MOVE_ARTICLES, (survivor.id, merged.id))
    conn.execute(MARK_MERGED, {"survivor": survivor.id, "merged": merged.id})
    conn.execute(CLEAR_MERGED_STATE, (merged.id,))
    conn.execute(DELETE_POSTINGS, (merged.id,))
    _save_story(conn, combined)
    conn.execute(INSERT_EVENT, (survivor.id, "merged", None, merged.id, Jsonb(detail)))
    log.info("merged story %d into %d", merged.id, survivor.id)
    return combined, merged.id


def _near_duplicate(
    conn: psycopg.Connection, article: Article, settings: ClusterSettings
) -> tuple[int, int, float] | None:
    """Store the article's MinHash and return (article, story, jaccard) of its best copy."""
    if len(article.body_shingles) < MIN_SHINGLES:
        return None
    signature = minhash(article.body_shingles)
    buckets = band_buckets(signature)
    bands, keys = [b for b, _ in buckets], [k for _, k in buckets]
    best: tuple[int, int, float] | None = None
    for other_id, other_signature, story_id in conn.execute(FIND_DUPLICATES, (bands, keys)):
        similarity = jaccard_estimate(signature, other_signature)
        if similarity >= settings.near_dup_jaccard and (best is None or similarity > best[2]):
            best = (other_id, story_id, similarity)
    conn.execute(SAVE_SIGNATURE, (article.id, signature))
    conn.execute(SAVE_BANDS, (article.id, bands, keys))
    return best


def _candidates(
    conn: psycopg.Connection,
    article: Article,
    vectors: ArticleVectors,
    settings: ClusterSettings,
) -> list[StoryState]:
    assert article.published_at is not None
    features = _query_features(article, vectors)
    if not features:
        return []
    since = article.published_at - settings.window
    ids = [r[0] for r in conn.execute(FIND_CANDIDATES, (features, since, MAX_CANDIDATES))]
    if not ids:
        return []
    return [_story_state(row) for row in conn.execute(LOAD_STORIES, (ids,))]


def assign_article(
    conn: psycopg.Connection, article_id: int, settings: ClusterSettings = ClusterSettings()
) -> Assignment | None:
    """Place one processed article (inside the caller's transaction).

    None if the article is gone or no longer at stage 'processed'.
    """
    loaded = _load_article(conn, article_id)
    if loaded is None:
        return None
    article, stage, assigned = loaded
    if stage != "processed":
        return None  # taken back for re-processing since it was queued: not ours now
    if assigned:
        # Already placed (re-processed after placement): its story does not change.
        conn.execute(MARK_CLUSTERED, (article.id,))
        return Assignment(article.id, -1, "skipped", 0.0)
    term_df, entity_df, documents = _count_frequencies(conn, article)
    vectors = article_vectors(article, term_df, entity_df, documents)

    result: Assignment | None = None
    duplicate = _near_duplicate(conn, article, settings)
    link = (duplicate[0], duplicate[2]) if duplicate else None
    if duplicate is not None:
        other_id, story_id, jaccard = duplicate
        story = _story_state(conn.execute(LOAD_STORY, (story_id,)).fetchone())
        gap = time_gap(article.published_at, story)
        # A copy joins its original's story unless that story is out of the window
        # (a republication weeks later is linked, but placed by its own date) or
        # its headline names another day (a templated daily report).
        in_window = article.published_at is None or gap <= settings.window
        days = dateline_days(article.title)
        if in_window and not other_days(days, _datelines(conn, days, [story.id])[story.id]):
            fit = score(vectors, story, gap, settings, has_body=article.has_body)
            detail = {"duplicate_of": other_id, "jaccard": round(jaccard, 4), **fit.detail()}
            _join_story(conn, story, article, vectors, fit.total, detail, link)
            result = Assignment(article.id, story.id, "duplicate", fit.total)
    if result is None and article.published_at is None:
        result = _create_story(conn, article, vectors, "undated", None, link)
    elif result is None and not (article.has_body or article.title_terms):
        result = _create_story(conn, article, vectors, "no_text", None, link)
    elif result is None:
        result = _place(conn, article, vectors, settings, link)
    conn.execute(MARK_CLUSTERED, (article.id,))
    return result


def _place(
    conn: psycopg.Connection,
    article: Article,
    vectors: ArticleVectors,
    settings: ClusterSettings,
    duplicate: tuple[int, float] | None = None,
) -> Assignment:
    """Join the best-scoring active story (merging a second close one) or open a story."""
    scored = []
    candidates = _candidates(conn, article, vectors, settings)
    days = dateline_days(article.title)
    datelines = _datelines(conn, days, [story.id for story in candidates])
    for story in candidates:
        gap = time_gap(article.published_at, story)
        if gap > settings.window or other_days(days, datelines[story.id]):
            continue
        scored.append((story, score(vectors, story, gap, settings, has_body=article.has_body)))
    scored.sort(key=lambda pair: (-pair[1].total, pair[0].id))
    if not scored or scored[0][1].total < settings.join_threshold:
        best = (scored[0][0].id, scored[0][1]) if scored else None
        reason = "below_threshold" if scored else "no_candidate"
        return _create_story(conn, article, vectors, reason, best, duplicate)

    story, best = scored[0]
    joined = _join_story(conn, story, article, vectors, best.total, best.detail(), duplicate)
    merged: list[int] = []
    for other, other_score in scored[1:]:
        if other_score.total < settings.join_threshold:
            break
        similarity = story_similarity(joined, other, settings)
        if similarity >= settings.merge_threshold:
            detail = {"article_id": article.id, "similarity": round(similarity, 4)}
            joined, gone = _merge(conn, joined, other, detail)
            merged.append(gone)
    return Assignment(article.id, joined.id, "joined", best.total, tuple(merged))


# --- the stage ----------------------------------------------------------------------------


@dataclass
class ClusterSummary:
    articles: int = 0
    created: int = 0
    joined: int = 0
    duplicates: int = 0
    merges: int = 0
    skipped: int = 0
    seconds: float = 0.0
    assign_seconds: list[float] = field(default_factory=list, repr=False)

    def count(self, assignment: Assignment) -> None:
        self.articles += 1
        self.merges += len(assignment.merged)
        if assignment.action == "created":
            self.created += 1
        elif assignment.action == "joined":
            self.joined += 1
        elif assignment.action == "duplicate":
            self.duplicates += 1
        else:
            self.skipped += 1

    def format(self) -> str:
        return (
            f"clustered {self.articles} article(s): {self.created} new stories, "
            f"{self.joined} joined, {self.duplicates} near-duplicates, {self.merges} merges "
            f"in {self.seconds:.1f} s"
        )


def cluster_pending(
    conn: psycopg.Connection,
    *,
    settings: ClusterSettings = ClusterSettings(),
    limit: int | None = None,
) -> ClusterSummary:
    """Assign every pending processed article, oldest first, one transaction each.

    Commits whatever the connection had open first, then holds the clustering
    advisory lock (waiting for another writer to finish) while it works.
    """
    started = time.monotonic()
    summary = ClusterSummary()
    conn.commit()
    conn.execute(LOCK, (CLUSTER_LOCK_ID,))
    conn.commit()
    try:
        while limit is None or summary.articles < limit:
            batch = CLAIM_BATCH if limit is None else min(CLAIM_BATCH, limit - summary.articles)
            ids = [r[0] for r in conn.execute(CLAIM_QUEUE, (batch,))]
            conn.commit()
            if not ids:
                break
            for article_id in ids:
                t0 = time.perf_counter()
                with conn.transaction(), conn.pipeline():
                    conn.execute(ASYNC_COMMIT)
                    assignment = assign_article(conn, article_id, settings)
                summary.assign_seconds.append(time.perf_counter() - t0)
                if assignment is not None:
                    summary.count(assignment)
    finally:
        if not conn.closed:  # a lost connection has released the lock already
            conn.execute(UNLOCK, (CLUSTER_LOCK_ID,))
            conn.commit()
    summary.seconds = time.monotonic() - started
    log.info(summary.format())
    return summary


def resolve_story(conn: psycopg.Connection, story_id: int) -> int | None:
    """The current id of a story (a merged id resolves to the survivor); None if unknown."""
    row = conn.execute("SELECT news.resolve_story(%s)", (story_id,)).fetchone()
    return row[0] if row else None


MEMBERS = "SELECT article_id FROM news.story_articles WHERE story_id = %s ORDER BY article_id"

MOVE_MEMBERS = "UPDATE news.story_articles SET story_id = %s WHERE article_id = ANY(%s)"

REVIVE_STORY = """
UPDATE news.stories SET merged_into = NULL, label = %s, label_article_id = %s, label_score = 0
WHERE id = %s AND merged_into = %s
"""

TERM_DFS = "SELECT term, df FROM news.term_df WHERE term = ANY(%s)"
ENTITY_DFS = "SELECT entity_id, df FROM news.entity_df WHERE entity_id = ANY(%s)"
DOCUMENTS = "SELECT value FROM news.cluster_counters WHERE name = 'documents'"

EARLIEST_MEMBER = """
SELECT a.id, a.title FROM news.story_articles AS sa JOIN news.articles AS a ON a.id = sa.article_id
WHERE sa.story_id = %s ORDER BY a.published_at NULLS LAST, a.id LIMIT 1
"""


class SplitError(ValueError):
    """The requested split does not describe a part of one story."""


def _rebuild(conn: psycopg.Connection, story_id: int) -> StoryState:
    """A story's centroids recomputed from its members with today's document frequencies."""
    members = []
    for (article_id,) in conn.execute(MEMBERS, (story_id,)).fetchall():
        loaded = _load_article(conn, article_id)
        assert loaded is not None
        members.append(loaded[0])
    terms_needed = sorted({t for a in members for t in (*a.title_terms, *a.body_terms)})
    term_df = dict(conn.execute(TERM_DFS, (terms_needed,)).fetchall())
    entities_needed = sorted({e for a in members for e in a.entities})
    entity_df = dict(conn.execute(ENTITY_DFS, (entities_needed,)).fetchall())
    documents = conn.execute(DOCUMENTS).fetchone()[0]
    states = [
        replace(_single(a, article_vectors(a, term_df, entity_df, documents)), id=story_id)
        for a in members
    ]
    story = states[0]
    for other in states[1:]:
        story = _combine(story, other)
    return story


def split_story(conn: psycopg.Connection, story_id: int, article_ids: Sequence[int]) -> int:
    """Move some articles of a story into a story of their own; returns the new story's id.

    An analyst's correction when a story turns out to be two. The new story's
    id is the earliest moved article's (an id merged in earlier is revived);
    both stories' centroids are rebuilt from their members with the current
    document frequencies, and the split is logged on the old story.
    """
    moving = sorted(set(article_ids))
    conn.commit()
    conn.execute(LOCK, (CLUSTER_LOCK_ID,))
    try:
        with conn.transaction():
            current = resolve_story(conn, story_id)
            members = {r[0] for r in conn.execute(MEMBERS, (current,))} if current else set()
            if not moving or not set(moving) <= members or set(moving) == members:
                raise SplitError(
                    f"articles {moving} are not a proper part of story {story_id} "
                    f"(members: {sorted(members)})"
                )
            if current in moving:
                raise SplitError(f"article {current} founded story {current}: move the others")
            new_id = moving[0]
            title = conn.execute("SELECT title FROM news.articles WHERE id = %s", (new_id,))
            label = title.fetchone()[0]
            revived = conn.execute(REVIVE_STORY, (label, new_id, new_id, current)).rowcount
            if not revived:
                conn.execute(INSERT_STORY, (new_id, label, new_id))
            conn.execute(MOVE_MEMBERS, (new_id, moving))
            for rebuilt in (_rebuild(conn, current), _rebuild(conn, new_id)):
                earliest = conn.execute(EARLIEST_MEMBER, (rebuilt.id,)).fetchone()
                _save_story(
                    conn, replace(rebuilt, label_score=0.0), label=(earliest[1], earliest[0])
                )
            detail = Jsonb({"articles": moving})
            conn.execute(INSERT_EVENT, (current, "split", None, new_id, detail))
    finally:
        conn.execute(UNLOCK, (CLUSTER_LOCK_ID,))
        conn.commit()
    log.info("split articles %s from story %d into story %d", moving, current, new_id)
    return new_id


RESET = """
TRUNCATE news.story_events, news.story_postings, news.story_articles, news.stories,
         news.term_df, news.entity_df, news.article_minhash, news.minhash_bands;
UPDATE news.cluster_counters SET value = 0;
UPDATE news.articles SET stage = 'processed' WHERE stage = 'clustered';
"""


def reset(conn: psycopg.Connection) -> int:
    """Forget all stories and statistics so everything is clustered afresh; returns articles."""
    conn.commit()
    conn.execute(LOCK, (CLUSTER_LOCK_ID,))
    try:
        with conn.transaction():
            conn.execute(RESET)
            pending = conn.execute(COUNT_PENDING).fetchone()[0]
    finally:
        conn.execute(UNLOCK, (CLUSTER_LOCK_ID,))
        conn.commit()
    return pending


LIST_STORIES = """
SELECT id, label, first_published_at, last_published_at, article_count, outlet_count
FROM news.stories
WHERE merged_into IS NULL AND (%(since)s::timestamptz IS NULL OR last_published_at >= %(since)s)
ORDER BY last_published_at DESC NULLS LAST, id DESC
LIMIT %(limit)s
"""

LIST_STORY_ARTICLES = """
SELECT sa.story_id, a.url, a.title, a.publisher, a.published_at
FROM news.story_articles AS sa JOIN news.articles AS a ON a.id = sa.article_id
WHERE sa.story_id = ANY(%s)
ORDER BY sa.story_id, a.published_at NULLS LAST, a.id
"""


def list_stories(
    conn: psycopg.Connection, *, since: datetime | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Live stories, most recently active first, each with its articles in time order."""
    stories = [
        {
            "story_id": row[0],
            "label": row[1],
            "first_published_at": row[2],
            "last_published_at": row[3],
            "article_count": row[4],
            "outlet_count": row[5],
            "articles": [],
        }
        for row in conn.execute(LIST_STORIES, {"since": since, "limit": limit})
    ]
    by_id = {story["story_id"]: story for story in stories}
    for story_id, url, title, publisher, published_at in conn.execute(
        LIST_STORY_ARTICLES, (list(by_id),)
    ):
        by_id[story_id]["articles"].append(
            {"url": url, "title": title, "publisher": publisher, "published_at": published_at}
        )
    return stories
