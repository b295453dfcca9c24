"""The Vietnamese analysis: normalisation, sentences, seed format, offsets, and fast POS tags
identical to underthesea's."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import joblib
import pytest
from conftest import FIXTURES
from underthesea import pos_tag, sent_tokenize, word_tokenize
from underthesea.pipeline.ner.model_crf import CRFNERPredictor
from underthesea.pipeline.pos_tag.model_crf import CRFPOSTagPredictor
from underthesea.pipeline.word_tokenize.regex_tokenize import tokenize
from underthesea_core import CRFFeaturizer

from pipeline import nlp

FIXTURE_TEXT = (FIXTURES / "nlp_news.txt").read_text(encoding="utf-8")
FIXTURE_LINES = FIXTURE_TEXT.splitlines()
#: Sentences taken from the shared Tuổi Trẻ articles for the POS identity test.
SHARED_ARTICLES = 12


def shared_sentences(shared_dir: Path) -> list[str]:
    path = shared_dir / "data/tuoitre2024/articles.jsonl"
    sentences = []
    with path.open(encoding="utf-8") as lines:
        for _, line in zip(range(SHARED_ARTICLES), lines, strict=False):
            record = json.loads(line)
            for text in (record["title"], record.get("lead") or "", record["body"]):
                sentences.extend(sent_tokenize(text))
    return sentences


def assert_same_tags_as_underthesea(sentences: list[str]) -> None:
    models = nlp.models()
    for sentence in sentences:
        expected = pos_tag(sentence)
        words = word_tokenize(sentence)
        assert [w for w, _ in expected] == words
        assert models.pos(words) == [tag for _, tag in expected], sentence


# --- fast POS ---------------------------------------------------------------------


def test_pos_tags_identical_to_underthesea_on_fixture() -> None:
    assert_same_tags_as_underthesea(FIXTURE_LINES)


@pytest.mark.shared
def test_pos_tags_identical_to_underthesea_on_news(shared_dir: Path) -> None:
    sentences = shared_sentences(shared_dir)
    assert len(sentences) >= 300
    assert_same_tags_as_underthesea(sentences)


@pytest.mark.parametrize("predictor", [CRFPOSTagPredictor, CRFNERPredictor])
def test_featurizer_writes_underthesea_feature_strings(predictor) -> None:
    """Same strings as underthesea's quadratic featuriser, down to one-word sentences."""
    transformer = predictor.Instance().transformer
    featurizer = nlp.TemplateFeaturizer(transformer.template, nlp.python_functions(frozenset()))
    sentences = [word_tokenize(line) for line in FIXTURE_LINES]
    sentences += [["Hà Nội"], ["Ông", "Ba"], ["Một", ",", "hai"], ["A  B", "c"]]
    for words in sentences:
        rows = [(w, "N", "B-NP", "X") for w in words]  # word, POS, chunk, NER columns
        assert featurizer.features(rows) == transformer.transform([rows])[0][0]


#: Tokens where underthesea_core's function semantics differ from Python's.
ODD_TOKENS = ["-5", "+3", "2147483647", "2147483648", "ß", "É", ",", "Đà", "٣", "ǅ", "x"]


def assert_same_segmenter_features(sentences: list[str]) -> None:
    models = nlp.models()
    core = CRFFeaturizer(
        joblib.load(nlp.WS_MODEL_DIR / "features.bin"),
        joblib.load(nlp.WS_MODEL_DIR / "dictionary.bin"),
    )
    for sentence in sentences:
        syllables = tokenize(sentence)
        expected = core.process([[[s] for s in syllables]])[0]
        assert models.ws_featurizer.features([(s,) for s in syllables]) == expected, sentence


def test_segmenter_features_identical_to_underthesea_core() -> None:
    assert_same_segmenter_features([*FIXTURE_LINES, " ".join(ODD_TOKENS)])


@pytest.mark.shared
def test_segmenter_features_identical_on_news(shared_dir: Path) -> None:
    assert_same_segmenter_features(shared_sentences(shared_dir))


def test_word_segmentation_identical_to_underthesea() -> None:
    """Fed underthesea's own syllables, the segmenter returns word_tokenize's words."""
    models = nlp.models()
    for sentence in FIXTURE_LINES:
        syllables = tokenize(sentence)
        tags = models.segment(syllables)
        words: list[str] = []
        for syllable, tag in zip(syllables, tags, strict=True):
            if tag == "I-W" and words:
                words[-1] += " " + syllable
            else:
                words.append(syllable)
        assert words == word_tokenize(sentence)


# --- normalisation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "canonical"),
    [
        ("hòa", "hoà"),
        ("Hòa", "Hoà"),
        ("HÒA", "HOÀ"),
        ("thủy", "thuỷ"),
        ("khỏe", "khoẻ"),
        ("hóa", "hoá"),
        ("hoà", "hoà"),
        ("hoàng", "hoàng"),  # closed syllable: the mark is on "a" in both styles
        ("quý", "quý"),  # "qu" is the initial
        ("giữa", "giữa"),
        ("người", "người"),
        ("Nguyễn", "Nguyễn"),
        ("thoại", "thoại"),
        ("khuỷu", "khuỷu"),
        ("tìên", "tiền"),  # misplaced mark
        ("café", "café"),  # not a Vietnamese syllable: untouched
        ("hòa-bình", "hoà-bình"),
    ],
)
def test_canonical_tone_marks(word: str, canonical: str) -> None:
    assert nlp.canonical_word(word) == canonical
    assert len(nlp.canonical_word(word)) == len(word)


def test_canonical_text_keeps_length_and_cleans_spaces() -> None:
    text = "Hòa\u00a0bình\tvà\u200bthủy lợi\r\nkhỏe"
    canonical = nlp.canonical_text(text)
    assert len(canonical) == len(text)
    assert canonical == "Hoà bình và thuỷ lợi\n\nkhoẻ"
    assert nlp.canonical_text("F\u201135\uff0c 1\u22122\u2029ð") == "F-35, 1-2\nđ"


# --- sentences --------------------------------------------------------------------


def sentences_of(text: str) -> list[str]:
    analysis = nlp.analyse(text)
    return [analysis.text[s.start : s.end] for s in analysis.sentences]


@pytest.mark.parametrize(
    "text",
    [
        "UBND TP.HCM họp tại Q.1 ngày 25/3 về 32.000 căn nhà và máy bay F-35.",
        "PGS.TS. Nguyễn Văn A và ThS. Lê Thị B đến Tp. Hồ Chí Minh hôm qua.",
        "Ông ấy sống ở St. Louis rồi chuyển tới Washington D.C. năm ngoái.",
        "Anh ấy im lặng... rồi bỏ đi.",
        "“Tại sao?” anh hỏi lại.",
        "Giá vàng tăng 1,5% lên 85,2 triệu đồng/lượng, theo SJC.",
        "Các mục (xem tr. 5) đã được duyệt.",
    ],
)
def test_one_sentence(text: str) -> None:
    assert sentences_of(text) == [text]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Ông nói: "Tôi sẽ đi." Sau đó ông về nhà.',
            ['Ông nói: "Tôi sẽ đi."', "Sau đó ông về nhà."],
        ),
        ("Anh ấy đến. “Chào mọi người”, anh nói.", ["Anh ấy đến.", "“Chào mọi người”, anh nói."]),
        ("Hết rồi… Hôm sau trời lại nắng.", ["Hết rồi…", "Hôm sau trời lại nắng."]),
        ("Có thật không? Không ai biết!", ["Có thật không?", "Không ai biết!"]),
        ("Đại diện của WHO. Ông X nói vậy.", ["Đại diện của WHO.", "Ông X nói vậy."]),
        ("Năm 2024 đã qua. 10 tỉnh đạt kế hoạch.", ["Năm 2024 đã qua.", "10 tỉnh đạt kế hoạch."]),
        ("Tiêu đề không có dấu chấm\nDòng thứ hai", ["Tiêu đề không có dấu chấm", "Dòng thứ hai"]),
        ("Gồm:\n- Hà Nội\n• Huế\n\n\nCuối cùng.", ["Gồm:", "- Hà Nội", "• Huế", "Cuối cùng."]),
        ("Kết quả: đạt. - Bước tiếp theo là gì?", ["Kết quả: đạt.", "- Bước tiếp theo là gì?"]),
        ("Nên ăn gì? 2. Vitamin D rất cần.", ["Nên ăn gì?", "2. Vitamin D rất cần."]),
        ("Kết luận (xem bảng). Số liệu mới.", ["Kết luận (xem bảng).", "Số liệu mới."]),
        ('Ông nói "đủ rồi". Mọi người về.', ['Ông nói "đủ rồi".', "Mọi người về."]),
    ],
)
def test_sentence_boundaries(text: str, expected: list[str]) -> None:
    assert sentences_of(text) == expected


# --- seed format and offsets --------------------------------------------------------

CLOSING = tuple(",;:?!”)]")
OPENING = tuple("“([")


def assert_seed_format(segmented: str) -> None:
    """One sentence per line, single spaces, "_" inside words, punctuation split off."""
    lines = segmented.split("\n")
    assert all(line and line == line.strip() and "  " not in line for line in lines)
    tokens = segmented.split()
    assert all(not t.startswith("_") and not t.endswith("_") for t in tokens if t != "_")
    assert all(not t.endswith(CLOSING) for t in tokens if len(t) > 1)
    assert all(not t.startswith(OPENING) for t in tokens if len(t) > 1)
    assert sum("_" in t for t in tokens) / len(tokens) > 0.1
    joined = [t for t in tokens if "_" in t and t != "_"]
    assert all(all(re.search(r"\w", part) for part in t.split("_")) for t in joined)


@pytest.mark.shared
def test_seed_format(shared_dir: Path) -> None:
    seeds = shared_dir / "seeds"
    reference = (seeds / "004_585a473785a8a0d5.txt").read_text(encoding="utf-8").strip()
    assert_seed_format(reference)  # the checker accepts the format it describes

    text = (seeds / "000_88dca81f111bb54c.txt").read_text(encoding="utf-8")
    analysis = nlp.analyse(text)
    assert_seed_format(analysis.segmented)
    assert len(analysis.segmented.split("\n")) == len(analysis.sentences) > 20
    # no character lost: the segmented text spells the (canonical) input
    assert analysis.segmented.replace("_", "").split() != []
    assert "".join(analysis.segmented.replace("_", "").split()) == "".join(
        nlp.canonical_text(text).split()
    )
    assert "Bộ_trưởng Quốc_phòng" in analysis.segmented
    assert "F-35 , F-15 ." in analysis.segmented


def assert_offsets(analysis: nlp.Analysis) -> None:
    text = analysis.text
    tokens = [t for s in analysis.sentences for t in s.tokens]
    assert all(text[t.start : t.end] == t.text for t in tokens)
    for s in analysis.sentences:
        assert (s.start, s.end) == (s.tokens[0].start, s.tokens[-1].end)
    # every visible character is in exactly one token, in order
    visible = "".join(nlp.canonical_text(text).split())
    assert "".join("".join(nlp.canonical_text(t.text).split()) for t in tokens) == visible
    assert all(text[m.start : m.end] == m.text for m in analysis.entities)


def test_offsets_on_nfd_input() -> None:
    nfd = unicodedata.normalize("NFD", FIXTURE_TEXT)
    assert nfd != FIXTURE_TEXT
    analysis = nlp.analyse(nfd)
    assert analysis.text == unicodedata.normalize("NFC", nfd)
    assert_offsets(analysis)
    assert analysis.segmented == nlp.analyse(FIXTURE_TEXT).segmented


def test_offsets_with_old_style_tone_marks_and_odd_spaces() -> None:
    text = "Hòa bình,\u00a0thủy lợi và sức khỏe.\u200b Bà Thúy\tmua hóa đơn.\r\nXong"
    analysis = nlp.analyse(text)
    assert_offsets(analysis)
    words = [t.text for s in analysis.sentences for t in s.tokens]
    assert "Hòa bình" in words and "sức khỏe" in words  # tokens keep the stored spelling
    assert "Hoà_bình" in analysis.segmented and "sức_khoẻ" in analysis.segmented
    assert len(analysis.sentences) == 3


def test_words_never_glue_punctuation_digits_or_foreign_names_to_words() -> None:
    segmented = nlp.analyse("Nguồn: [Link nguồn]Nguồn: Israel hủy cuộc gặp tối 25/3.").segmented
    assert "]_" not in segmented and "Israel_" not in segmented and "_25/3" not in segmented
    assert "Nguồn : [ Link nguồn ] Nguồn :" in segmented


def test_entities_have_offsets_into_the_text() -> None:
    analysis = nlp.analyse(FIXTURE_TEXT)
    assert {"Hà Nội", "Phạm Minh Chính"} <= {m.text for m in analysis.entities}
    assert_offsets(analysis)


def test_empty_text() -> None:
    analysis = nlp.analyse(" \n ")
    assert analysis.sentences == () and analysis.segmented == "" and analysis.entities == ()
