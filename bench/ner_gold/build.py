"""Tools that built the NER gold set (no NER model is involved anywhere here).

    python bench/ner_gold/build.py select        # seeded sentence selection -> selection.jsonl
    python bench/ner_gold/build.py show N        # print batch N (50 sentences) to annotate
    python bench/ner_gold/build.py compile       # annotations/*.tsv -> gold.jsonl (offsets)
    python bench/ner_gold/build.py check         # consistency report for the second pass

The annotator reads each printed sentence and writes, per sentence, one line in
``annotations/bNN.tsv``: ``<sid>\\t<TYPE surface>; <TYPE surface@k>; ...`` (``-`` for
none). ``compile`` turns surfaces into offsets: a bare surface marks every
occurrence on word boundaries that is not inside a longer marked span; ``@k`` marks
only the k-th occurrence. Texts are read from the shared folder and never written
into the repo.
"""

from __future__ import annotations

import json
import random
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ner_gold import (  # noqa: E402  (the loader lives one folder up)
    DEFAULT_SHARED,
    ENTITY_TYPES,
    GOLD_PATH,
    SCORED_TYPES,
    GoldEntity,
    entities_problem,
    field_texts,
    is_word_char,
    sha1,
)

SELECTION_PATH = HERE / "selection.jsonl"
ANNOTATIONS_DIR = HERE / "annotations"
TOPICS_PATH = HERE / "topics.tsv"

#: Fixed seed: the selection must be reproducible from this file alone.
SEED = 20241104
#: Sentences annotated per batch file.
BATCH_SIZE = 50
#: Sentences taken from one article: two keeps the set spread over many articles
#: and outlets while giving the annotator a little context for each name.
PER_ARTICLE = 2
#: Share of sentences drawn from the "no capitalised word inside" pool, so that
#: roughly a tenth of the set has no entity (the brief asks for ~10%).
NO_NAME_SHARE = 0.12
#: Sentence length bounds in characters: shorter pieces are captions or debris,
#: longer ones are usually two sentences the rule splitter failed to separate.
MIN_CHARS, MAX_CHARS = 30, 330
#: Target dev size; the rest of the shuffled article groups go to test.
DEV_SENTENCES = 150

#: Tuổi Trẻ articles per category (of 1,000): every topic the brief names, with
#: the large desks weighted by their size.
TUOITRE_QUOTA = {
    "Thế giới": 30,
    "Pháp luật": 28,
    "Thời sự": 28,
    "Sức khỏe": 18,
    "Giáo dục": 18,
    "Bạn đọc làm báo": 8,
    "Kinh doanh": 6,
    "Nhịp sống trẻ": 4,
    "Khoa học": 4,
    "Nhà đất": 4,
    "Thời tiết": 2,
    "Công nghệ": 2,
    "Du lịch": 2,
    "Giả - Thật": 2,
    "Xe": 1,
    "Văn hóa": 1,
    "Thể thao": 1,
    "Giải trí": 1,
    "Phóng sự": 1,
    "Bình luận": 1,
}
#: VMDS articles, taken round-robin over publishers so many outlets appear.
VMDS_ARTICLES = 110
#: Supplementary test articles (see ``supplement``): sized so the test split clears
#: 900 scored mentions with a margin, at the ~2.5 mentions per sentence seen so far.
SUPPLEMENT_TUOITRE = 20
SUPPLEMENT_VMDS = 20
#: Seed documents used: 000 is raw text (004 is word-segmented and skipped). The
#: project was born from it, so it goes to dev, never to test.
SEED_DOCS = ("000_88dca81f111bb54c",)
SEED_SENTENCES = 8

#: Tuổi Trẻ desk -> topic; "Thời sự" articles get a topic by hand in topics.tsv.
CATEGORY_TOPIC = {
    "Thế giới": "world",
    "Pháp luật": "crime-courts",
    "Sức khỏe": "health",
    "Giáo dục": "education",
    "Bạn đọc làm báo": "society",
    "Kinh doanh": "business",
    "Nhà đất": "business",
    "Nhịp sống trẻ": "society",
    "Khoa học": "science-tech",
    "Công nghệ": "science-tech",
    "Xe": "business",
    "Thời tiết": "provinces",
    "Du lịch": "culture",
    "Văn hóa": "culture",
    "Giải trí": "culture",
    "Thể thao": "sports",
    "Giả - Thật": "society",
    "Phóng sự": "society",
    "Bình luận": "society",
}

#: Tokens ending in "." that do not end a sentence (titles, "TP." before a name).
_ABBREVIATIONS = (
    "TP Tp TS ThS Th.S PGS GS BS BSCKII BSCKI CKII CKI Mr Mrs Ms Dr St Co Inc Ltd Jr Q P"
)
ABBREVIATIONS = frozenset(_ABBREVIATIONS.split())
_CANDIDATE_END = re.compile(r"[.!?…]+[\"”’»)\]]*\s+|\n+")
_OPENERS = '"“‘«([–-'


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Rule-based sentence spans (stripped) over an NFC text.

    A boundary is end punctuation followed by space and an upper-case letter or a
    digit (after optional opening quotes), unless the word before the dot is a
    known abbreviation or a single capital (an initial: "anh T. cho biết"). A
    newline always ends a sentence (the seed keeps captions on their own line).
    """
    spans = []
    start = 0
    for match in _CANDIDATE_END.finditer(text):
        nxt = text[match.end() : match.end() + 3].lstrip(_OPENERS)
        if "\n" not in match.group():
            if not nxt or not (nxt[0].isupper() or nxt[0].isdigit()):
                continue
            before = text[: match.start()].split()
            word = before[-1].split(".")[-1] if before else ""
            if word in ABBREVIATIONS or (len(word) == 1 and word.isupper()):
                continue
        end = match.start() + len(match.group().rstrip())
        spans.append((start, end))
        start = match.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        piece = text[s:e]
        left = len(piece) - len(piece.lstrip())
        right = len(piece.rstrip())
        if right > left:
            out.append((s + left, s + right))
    return out


def capital_runs(sentence: str) -> int:
    """Runs of capitalised words after the first word: a crude, model-free hint
    that a sentence names something, used only to weight the selection."""
    words = sentence.split()[1:]
    runs, inside = 0, False
    for word in words:
        letters = word.lstrip(_OPENERS)
        cap = bool(letters) and letters[0].isupper()
        if cap and not inside:
            runs += 1
        inside = cap
    return runs


def candidates(text: str, dataset: str, article_id: str, field: str) -> list[dict]:
    found = []
    for start, end in split_sentences(text):
        sentence = text[start:end]
        if MIN_CHARS <= len(sentence) <= MAX_CHARS:
            found.append(
                {
                    "sid": f"{dataset}:{article_id}:{field}:{start}-{end}",
                    "dataset": dataset,
                    "article_id": article_id,
                    "field": field,
                    "start": start,
                    "end": end,
                    "sha1": sha1(sentence),
                    "runs": capital_runs(sentence),
                }
            )
    return found


def pick(
    rng: random.Random, pool: list[dict], k: int, seen: set[str], bare_share: float = NO_NAME_SHARE
) -> list[dict]:
    """k sentences of one article: weighted by capital runs, with a ``bare_share``
    chance per sentence that one of them comes from the sentences without any."""
    pool = [c for c in pool if c["sha1"] not in seen]
    named = [c for c in pool if c["runs"]]
    bare = [c for c in pool if not c["runs"]]
    chosen: list[dict] = []
    if bare and rng.random() < bare_share * k:
        chosen.append(rng.choice(bare))
    while named and len(chosen) < k:
        item = rng.choices(named, weights=[c["runs"] for c in named])[0]
        named.remove(item)
        chosen.append(item)
    for item in chosen:
        seen.add(item["sha1"])
    return sorted(chosen, key=lambda c: (c["field"] != "title", c["field"] != "lead", c["start"]))


def read_articles(shared: Path, relative: str) -> list[dict]:
    with open(shared / relative, encoding="utf-8") as handle:
        return sorted((json.loads(line) for line in handle), key=lambda a: a["id"])


def article_candidates(article: dict, dataset: str) -> list[dict]:
    pool = []
    for field in ("title", "lead", "body"):
        if article.get(field):
            text = unicodedata.normalize("NFC", article[field])
            pool += candidates(text, dataset, article["id"], field)
    return pool


def select(shared: Path) -> list[dict]:
    """The seeded selection: article groups (one split each), shuffled, then dev
    filled to DEV_SENTENCES and the rest test."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    groups: dict[str, list[dict]] = defaultdict(list)

    tuoitre = read_articles(shared, "data/tuoitre2024/articles.jsonl")
    by_category = defaultdict(list)
    for article in tuoitre:
        by_category[article.get("category")].append(article)
    for category, quota in TUOITRE_QUOTA.items():
        for article in rng.sample(by_category[category], quota):
            for item in pick(rng, article_candidates(article, "tuoitre2024"), PER_ARTICLE, seen):
                item.update(publisher=article["publisher"], category=category)
                groups[f"tuoitre2024:{article['id']}"].append(item)

    vmds = read_articles(shared, "data/vmds/articles.jsonl")
    by_publisher = defaultdict(list)
    for article in vmds:
        by_publisher[article["publisher"]].append(article)
    for articles in by_publisher.values():
        rng.shuffle(articles)
    order = sorted(by_publisher, key=lambda p: (-len(by_publisher[p]), p))
    taken = 0
    while taken < VMDS_ARTICLES:
        for publisher in order:
            if by_publisher[publisher] and taken < VMDS_ARTICLES:
                article = by_publisher[publisher].pop()
                chosen = pick(rng, article_candidates(article, "vmds"), PER_ARTICLE, seen)
                for item in chosen:
                    item.update(publisher=publisher, category=None)
                    # One story's articles share one split: outlets copy each other.
                    groups[f"vmds:{article['cluster_id']}"].append(item)
                taken += bool(chosen)

    seed_texts = field_texts(shared, "seeds")
    seed_items = []
    for doc in SEED_DOCS:
        pool = candidates(seed_texts[(doc, "body")], "seeds", doc, "body")
        seed_items += pick(rng, pool, SEED_SENTENCES, seen)
    for item in seed_items:
        item.update(publisher="seed", category=None, split="dev")

    keys = sorted(groups)
    rng.shuffle(keys)
    dev_count = len(seed_items)
    selection = list(seed_items)
    for key in keys:
        split = "dev" if dev_count < DEV_SENTENCES else "test"
        dev_count += len(groups[key]) if split == "dev" else 0
        for item in groups[key]:
            item["split"] = split
            selection.append(item)
    return selection + supplement(shared, selection, seen)


def supplement(shared: Path, selection: list[dict], seen: set[str]) -> list[dict]:
    """Extra test sentences from articles not used yet, drawn with their own seed.

    Added after the first 549 sentences were annotated: their test split held 848
    scored mentions, short of the 900 the brief asks for, and 18% of its sentences
    had none. So this draw takes no sentence from the "bare" pool, and its VMDS
    articles come first from outlets not yet in the set. Articles of a VMDS story
    already in dev are skipped, so dev still shares no story with test.
    """
    rng = random.Random(SEED + 1)
    used = {(item["dataset"], item["article_id"]) for item in selection}
    extra = []
    tuoitre = read_articles(shared, "data/tuoitre2024/articles.jsonl")
    fresh = [a for a in tuoitre if ("tuoitre2024", a["id"]) not in used]
    for article in rng.sample(fresh, SUPPLEMENT_TUOITRE):
        for item in pick(rng, article_candidates(article, "tuoitre2024"), PER_ARTICLE, seen, 0.0):
            item.update(publisher=article["publisher"], category=article.get("category"))
            extra.append(item)

    vmds = read_articles(shared, "data/vmds/articles.jsonl")
    cluster_of = {a["id"]: a["cluster_id"] for a in vmds}
    dev_clusters = {
        cluster_of[item["article_id"]]
        for item in selection
        if item["dataset"] == "vmds" and item["split"] == "dev"
    }
    outlets_in = {item["publisher"] for item in selection}
    fresh = [
        a for a in vmds if ("vmds", a["id"]) not in used and a["cluster_id"] not in dev_clusters
    ]
    rng.shuffle(fresh)
    fresh.sort(key=lambda a: a["publisher"] in outlets_in)  # stable: new outlets first
    taken, outlets_taken = 0, set()
    for article in fresh:
        if taken == SUPPLEMENT_VMDS:
            break
        if article["publisher"] in outlets_taken:
            continue
        chosen = pick(rng, article_candidates(article, "vmds"), PER_ARTICLE, seen, 0.0)
        for item in chosen:
            item.update(publisher=article["publisher"], category=None)
            extra.append(item)
        outlets_taken.add(article["publisher"])
        taken += bool(chosen)
    for item in extra:
        item["split"] = "test"
    return extra


def write_selection(selection: list[dict]) -> None:
    with open(SELECTION_PATH, "w", encoding="utf-8") as handle:
        for item in selection:
            record = {k: v for k, v in item.items() if k != "runs"}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sentence_text(texts: dict, item: dict) -> str:
    field_text = texts[item["dataset"]][(item["article_id"], item["field"])]
    return field_text[item["start"] : item["end"]]


def load_texts(shared: Path, selection: list[dict]) -> dict:
    return {d: field_texts(shared, d) for d in {item["dataset"] for item in selection}}


def show(shared: Path, batch: int) -> None:
    selection = read_jsonl(SELECTION_PATH)
    texts = load_texts(shared, selection)
    for item in selection[batch * BATCH_SIZE : (batch + 1) * BATCH_SIZE]:
        tag = item.get("category") or item["publisher"]
        print(f"{item['sid']}\t[{item['split']} | {tag}]")
        print(f"    {sentence_text(texts, item)}\n")


def parse_annotation(spec: str) -> tuple[str, str, int | None]:
    kind, _, surface = spec.strip().partition(" ")
    occurrence = None
    match = re.fullmatch(r"(.*)@(\d+)", surface)
    if match:
        surface, occurrence = match.group(1), int(match.group(2))
    if kind not in ENTITY_TYPES or not surface:
        raise ValueError(f"bad annotation {spec!r}")
    return kind, surface, occurrence


def occurrences(text: str, surface: str) -> list[int]:
    """Starts of ``surface`` in ``text`` that sit on word boundaries."""
    found, at = [], text.find(surface)
    while at >= 0:
        end = at + len(surface)
        before = text[at - 1] if at else " "
        after = text[end] if end < len(text) else " "
        if not is_word_char(before) and not is_word_char(after) and after != "+":
            found.append(at)
        at = text.find(surface, at + 1)
    return found


def resolve(text: str, specs: list[str], warn: list[str], sid: str) -> list[GoldEntity]:
    """Surfaces -> spans: explicit @k first, then longest surfaces first, skipping
    occurrences inside a span already taken (the layer is flat)."""
    parsed = [parse_annotation(s) for s in specs]
    parsed.sort(key=lambda p: (p[2] is None, -len(p[1])))
    taken: list[GoldEntity] = []
    for kind, surface, occurrence in parsed:
        starts = occurrences(text, surface)
        if occurrence is not None:
            if occurrence > len(starts):
                raise ValueError(f"{sid}: {surface!r} has no occurrence {occurrence}")
            starts = [starts[occurrence - 1]]
        free = [s for s in starts if all(s + len(surface) <= t.start or s >= t.end for t in taken)]
        if not free:
            raise ValueError(f"{sid}: {surface!r} not found free on word boundaries")
        if occurrence is None and len(free) > 1:
            warn.append(f"{sid}: {kind} {surface!r} marked {len(free)} times")
        taken += [GoldEntity(s, s + len(surface), kind, surface) for s in free]
    return sorted(taken, key=lambda e: e.start)


def read_annotations() -> dict[str, list[str]]:
    annotations: dict[str, list[str]] = {}
    for path in sorted(ANNOTATIONS_DIR.glob("*.tsv")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            sid, _, rest = line.partition("\t")
            if sid in annotations:
                raise ValueError(f"{path.name}:{number}: {sid} annotated twice")
            rest = rest.split("  #", 1)[0].strip()
            annotations[sid] = [] if rest == "-" else [s for s in rest.split(";") if s.strip()]
    return annotations


def read_topics() -> dict[str, str]:
    if not TOPICS_PATH.exists():
        return {}
    topics = {}
    for line in TOPICS_PATH.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, topic = line.split("\t")[:2]
            topics[key] = topic.strip()
    return topics


def topic_of(item: dict, topics: dict[str, str]) -> str:
    key = f"{item['dataset']}:{item['article_id']}"
    if key in topics:
        return topics[key]
    if item["dataset"] == "seeds":
        return "world"
    if item.get("category") in CATEGORY_TOPIC:
        return CATEGORY_TOPIC[item["category"]]
    raise ValueError(f"{key}: no topic (add it to {TOPICS_PATH.name})")


def compile_records(shared: Path, warn: list[str]) -> list[dict]:
    """Annotated sentences of the selection, in selection order, with offsets."""
    selection = read_jsonl(SELECTION_PATH)
    texts = load_texts(shared, selection)
    annotations = read_annotations()
    topics = read_topics()
    unknown = set(annotations) - {item["sid"] for item in selection}
    if unknown:
        raise ValueError(f"annotated sids not in the selection: {sorted(unknown)[:5]}")
    records = []
    for item in selection:
        if item["sid"] not in annotations:
            continue
        text = sentence_text(texts, item)
        assert sha1(text) == item["sha1"], item["sid"]
        entities = resolve(text, annotations[item["sid"]], warn, item["sid"])
        problem = entities_problem(text, tuple(entities))
        if problem:
            raise ValueError(f"{item['sid']}: {problem}")
        record = {
            "sid": item["sid"],
            "dataset": item["dataset"],
            "article_id": item["article_id"],
            "field": item["field"],
            "start": item["start"],
            "end": item["end"],
            "sha1": item["sha1"],
            "split": item["split"],
            "publisher": item["publisher"],
            "topic": topic_of(item, topics),
            "entities": [[e.start, e.end, e.type, e.text] for e in entities],
        }
        records.append(record)
    return records


def compile_gold(shared: Path) -> None:
    """annotations/*.tsv -> gold.jsonl, printing the surfaces marked more than once."""
    warn: list[str] = []
    records = compile_records(shared, warn)
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    GOLD_PATH.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for message in warn:
        print("note:", message)
    print(f"{len(lines)} sentences written to {GOLD_PATH.name}")


#: Capitalised words that are titles or common acronyms, skipped by the "CAPS"
#: report so that it lists only possible missed names.
_NOT_NAMES = (
    "Bộ trưởng|Thứ trưởng|Thủ tướng|Phó Thủ tướng|Tổng thống|Phó Tổng thống|Chủ tịch|"
    "Phó chủ tịch|Phó Chủ tịch|Ngoại trưởng|Cố vấn|Tổng Bí thư|Bí thư|Thủ đô|Nhà nước|"
    "Quốc phòng|An ninh|Quốc gia|Phó|Trưởng|Giám đốc|Tổng giám đốc|TS|PGS|GS|ThS|BS|CPI|"
    "USD|VND|GDP|COVID|Ảnh|Nguồn|Hãng tin|Đại tướng|Thượng tướng|Trung tướng|Thiếu tướng|"
    "Đại tá|Thượng tá|Trung tá|Thiếu tá|Đồng thời|Tổng|Thủ|Điều|Khoản|Nghị định|"
    "Nghị quyết|Thông tư|Tiến sĩ|Thạc sĩ|Giáo sư|Bác sĩ|Nhà báo|Nghệ sĩ|NSND|NSƯT|HLV|"
    "Chánh án|Viện trưởng|UBND tỉnh|UBND huyện|UBND thành phố|UBND TP|Đảng ủy|Tỉnh ủy|"
    "Thành ủy|Huyện ủy|Tòa|TAND|HĐXX"
)
NOT_NAMES = tuple(_NOT_NAMES.split("|"))


def check(shared: Path) -> None:
    """Second-pass report: surfaces typed two ways, marked surfaces left unmarked
    elsewhere, and capitalised words outside any span (possible misses)."""
    records = read_jsonl(GOLD_PATH)
    texts = load_texts(shared, records)
    types: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        for _, _, kind, surface in record["entities"]:
            types[surface][kind] += 1
    for surface, kinds in sorted(types.items()):
        if len(kinds) > 1:
            print(f"TYPES  {surface!r}: {dict(kinds)}")
    for record in records:
        text = sentence_text(texts, record)
        spans = [(s, e) for s, e, _, _ in record["entities"]]

        def covered(start: int, end: int, spans: list = spans) -> bool:
            return any(s <= start and end <= e for s, e in spans)

        for surface, kinds in types.items():
            if not any(k in SCORED_TYPES for k in kinds):
                continue
            for start in occurrences(text, surface):
                if not covered(start, start + len(surface)):
                    print(f"MISSED {record['sid']}: {surface!r} {dict(kinds)}")
        for match in re.finditer(r"\w+", text):
            word, rest = match.group(), text[match.start() :]
            if rest.startswith(NOT_NAMES) or re.search(r"[.:!?“\"(]\s*$", text[: match.start()]):
                continue
            if word[0].isupper() and match.start() > 0 and not covered(*match.span()):
                context = text[max(0, match.start() - 25) : match.end() + 25]
                print(f"CAPS   {record['sid']}: {word!r} in …{context}…")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    shared = DEFAULT_SHARED
    if command == "select":
        selection = select(shared)
        write_selection(selection)
        print(Counter(item["split"] for item in selection), len(selection))
    elif command == "show":
        show(shared, int(argv[2]))
    elif command == "compile":
        compile_gold(shared)
    elif command == "check":
        check(shared)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
