"""Entity recognition and canonicalisation on real underthesea segmentation and POS tags.

Core tests use sentences written for this file; the seed tests read ``../shared``.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from pipeline import nlp
from pipeline.ner import Mention, canonical_key, find_entities


def entities(text: str) -> list[Mention]:
    text = unicodedata.normalize("NFC", text)
    sentences, _ = nlp.segment_and_tag(text)
    mentions = find_entities(text, sentences)
    for m in mentions:
        assert text[m.start : m.end] == m.text
    return mentions


def spans(text: str) -> set[tuple[str, str]]:
    return {(m.type, m.text) for m in entities(text)}


def test_titles_stay_outside_people_and_places_are_split_off() -> None:
    found = spans("Bộ trưởng Quốc phòng Israel Yoav Gallant đã tới Washington hôm 25/3.")
    assert found == {("LOC", "Israel"), ("PER", "Yoav Gallant"), ("LOC", "Washington")}


def test_a_role_without_a_name_leaves_only_the_place() -> None:
    assert spans("Tổng thống Mỹ cho biết sẽ gọi điện cho Thủ tướng Israel.") == {
        ("LOC", "Mỹ"),
        ("LOC", "Israel"),
    }


def test_honorifics_and_vietnamese_names() -> None:
    found = spans("Theo ông Nguyễn Văn Hùng, bà Trần Thị Lan đã gặp chị Huyền tại Hà Nội.")
    assert found == {
        ("PER", "Nguyễn Văn Hùng"),
        ("PER", "Trần Thị Lan"),
        ("PER", "Huyền"),
        ("LOC", "Hà Nội"),
    }


def test_organisation_cues_take_their_body_and_place() -> None:
    found = spans(
        "Sở Y tế TP.HCM và Công an tỉnh Bắc Giang đã làm việc với Bộ Ngoại giao Mỹ "
        "về hồ sơ của Bệnh viện Chợ Rẫy."
    )
    assert found == {
        ("ORG", "Sở Y tế TP.HCM"),
        ("ORG", "Công an tỉnh Bắc Giang"),
        ("ORG", "Bộ Ngoại giao Mỹ"),
        ("ORG", "Bệnh viện Chợ Rẫy"),
    }


def test_lowercase_administrative_bodies_are_organisations() -> None:
    found = spans("Vụ việc đã được báo cho công an huyện Lạng Giang và UBND tỉnh Quảng Nam.")
    assert found == {("ORG", "công an huyện Lạng Giang"), ("ORG", "UBND tỉnh Quảng Nam")}


def test_descriptions_are_not_organisations() -> None:
    found = spans("Chính phủ Mỹ và quân đội Ukraine đã bình luận trên mạng xã hội Facebook.")
    assert found == {("LOC", "Mỹ"), ("LOC", "Ukraine"), ("ORG", "Facebook")}


def test_a_descriptor_before_a_brand_stays_outside() -> None:
    found = spans("Hãng Apple và tập đoàn Samsung cạnh tranh với Tập đoàn Điện lực Việt Nam.")
    assert ("ORG", "Apple") in found
    assert ("ORG", "Samsung") in found
    assert ("ORG", "Tập đoàn Điện lực Việt Nam") in found


def test_place_cues_are_part_of_the_place() -> None:
    found = spans("Nước sông Hồng dâng cao ở quận 12 và huyện Lạng Giang, tỉnh Bắc Giang.")
    assert found == {
        ("LOC", "sông Hồng"),
        ("LOC", "quận 12"),
        ("LOC", "huyện Lạng Giang"),
        ("LOC", "tỉnh Bắc Giang"),
    }


def test_a_title_before_an_organisation_and_a_name() -> None:
    found = spans(
        "Bộ trưởng Bộ Tài chính Hồ Đức Phớc và Chủ tịch UBND tỉnh An Giang Hồ Văn Mừng dự họp."
    )
    assert found == {
        ("ORG", "Bộ Tài chính"),
        ("PER", "Hồ Đức Phớc"),
        ("ORG", "UBND tỉnh An Giang"),
        ("PER", "Hồ Văn Mừng"),
    }


def test_laws_awards_and_products_are_not_people_places_or_organisations() -> None:
    found = spans("Luật Đất đai và Giải thưởng Hồ Chí Minh được nhắc đến, cùng mẫu Galaxy S24.")
    assert {kind for kind, _ in found} <= {"MISC"}


def test_streets_after_a_house_number_and_facilities() -> None:
    found = spans("Cửa hàng ở số 314 Cao Thắng, phường 12, quận 10, gần sân bay Tân Sơn Nhất.")
    assert found == {
        ("LOC", "Cao Thắng"),
        ("LOC", "phường 12"),
        ("LOC", "quận 10"),
        ("LOC", "sân bay Tân Sơn Nhất"),
    }


def test_short_country_forms_in_pairs_are_places() -> None:
    found = spans("Quan hệ Việt - Mỹ tốt lên trong khi căng thẳng Mỹ - Trung gia tăng.")
    assert found == {("LOC", "Việt"), ("LOC", "Mỹ"), ("LOC", "Trung")}


def test_languages_and_sentence_openers_are_not_entities() -> None:
    assert spans("Theo đó, học sinh sẽ học tiếng Anh từ lớp 3.") == set()


def test_short_forms_take_the_full_name_of_the_article() -> None:
    mentions = entities(
        "Ngoại trưởng Mỹ Antony Blinken đã gặp ông Yoav Gallant. "
        "Ông Gallant cảm ơn Blinken. Sau đó Gallant rời Washington."
    )
    canonical = {(m.text, m.canonical) for m in mentions if m.type == "PER"}
    assert canonical == {
        ("Antony Blinken", "Antony Blinken"),
        ("Yoav Gallant", "Yoav Gallant"),
        ("Gallant", "Yoav Gallant"),
        ("Blinken", "Antony Blinken"),
    }


def test_a_short_form_shared_by_two_people_is_not_merged() -> None:
    mentions = entities("Ông Nguyễn Văn Nam và ông Trần Văn Nam cùng dự họp. Ông Nam phát biểu.")
    short = [m for m in mentions if m.text == "Nam"]
    assert short and all(m.canonical == "Nam" for m in short)


def test_gazetteer_aliases_and_abbreviations_share_a_canonical_name() -> None:
    mentions = entities("Hoa Kỳ và Liên Hợp Quốc (LHQ) đã họp tại TP HCM.")
    canonical = {m.text: m.canonical for m in mentions}
    assert canonical["Hoa Kỳ"] == "Mỹ"
    assert canonical["LHQ"] == canonical["Liên Hợp Quốc"] == "Liên hợp quốc"
    assert canonical["TP HCM"] == "TP.HCM"


@pytest.mark.parametrize(
    ("kind", "variants"),
    [
        ("LOC", ["TP.HCM", "TP HCM", "Thành phố Hồ Chí Minh", "TPHCM", "tp. hồ chí minh"]),
        ("ORG", ["UBND TP Hà Nội", "Ủy ban nhân dân TP Hà Nội", "Uỷ ban nhân dân tp. Hà Nội"]),
        ("LOC", ["Hoa Kỳ", "Mỹ", "mỹ"]),
        ("LOC", ["Hòa Bình", "Hoà Bình", "HÒA BÌNH", "Hoà  Bình"]),
        ("LOC", ["TP Hà Nội", "Hà Nội", "thành phố Hà Nội"]),
        ("ORG", ["Liên hợp quốc", "LHQ", "Liên Hiệp Quốc"]),
        ("PER", ["Yoav Gallant", "yoav  gallant", "Yoav\u00a0Gallant"]),
        ("ORG", ["Bộ Ngoại giao Mỹ", "Bộ Ngoại giao Hoa Kỳ"]),
        ("ORG", ["Sở Y tế TP.HCM", "Sở Y tế TPHCM", "Sở Y tế Thành phố Hồ Chí Minh"]),
        ("ORG", ["UBND tỉnh Quảng Nam", "UBND Quảng Nam", "Ủy ban nhân dân tỉnh Quảng Nam"]),
        ("ORG", ["U23 Việt Nam", "U23 VN"]),
    ],
)
def test_canonical_key_unifies_variants(kind: str, variants: list[str]) -> None:
    keys = {canonical_key(kind, v) for v in variants}
    assert len(keys) == 1, keys


def test_a_place_named_with_and_without_its_unit_word_has_one_canonical_name() -> None:
    mentions = entities("Mưa lớn ở TP Hà Nội. Chiều nay, Hà Nội đã tạnh mưa.")
    assert {(m.text, m.canonical) for m in mentions} == {
        ("TP Hà Nội", "Hà Nội"),
        ("Hà Nội", "Hà Nội"),
    }


def test_canonical_key_keeps_different_entities_apart() -> None:
    assert canonical_key("LOC", "Hà Nội") != canonical_key("LOC", "Hà Nam")
    assert canonical_key("ORG", "Bộ Y tế") != canonical_key("ORG", "Sở Y tế")
    assert canonical_key("PER", "Lê Văn Anh") != canonical_key("PER", "Lê Văn Ánh")
    assert canonical_key("ORG", "UBND Hà Nội") != canonical_key("ORG", "UBND Hà Nam")
    assert canonical_key("LOC", "quận 1") != canonical_key("LOC", "quận 10")


def test_offsets_point_into_the_analysed_text_with_odd_spacing() -> None:
    text = "Ông  Joe\u00a0Biden nói với Thủ tướng Benjamin Netanyahu tại Nhà Trắng."
    mentions = entities(text)
    assert {(m.type, m.text) for m in mentions} == {
        ("PER", "Joe\u00a0Biden"),
        ("PER", "Benjamin Netanyahu"),
        ("ORG", "Nhà Trắng"),
    }


# --- the seed pair (../shared) ------------------------------------------------------------

SEED_NAMES = {
    ("PER", "Yoav Gallant"),
    ("PER", "Lloyd Austin"),
    ("PER", "Benjamin Netanyahu"),
    ("PER", "Antony Blinken"),
    ("LOC", "Rafah"),
    ("LOC", "Gaza"),
    ("LOC", "Washington"),
}


def unsegment(segmented: str) -> str:
    """The seed format back to plain text: "_" joins syllables, punctuation is spaced."""
    text = segmented.replace("_", " ")
    text = re.sub(r" ([,.:;!?)”])", r"\1", text)
    return re.sub(r"([(“]) ", r"\1", text)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["000_88dca81f111bb54c.txt", "004_585a473785a8a0d5.txt"])
def test_seed_documents_yield_the_story_entities(shared_dir: Path, name: str) -> None:
    text = (shared_dir / "seeds" / name).read_text(encoding="utf-8")
    if name.startswith("004"):
        text = unsegment(text)
    found = {(m.type, m.canonical) for m in entities(text)}
    assert found >= SEED_NAMES


def test_person_names_carry_across_fields_analysed_apart():
    from pipeline.ner import Mention, canonicalise_persons

    title = [Mention(4, 11, "PER", "Gallant", "Gallant")]
    body = [
        Mention(28, 40, "PER", "Yoav Gallant", "Yoav Gallant"),
        Mention(0, 6, "LOC", "Israel", "Israel"),
        Mention(50, 56, "PER", "Austin", "Austin"),
        Mention(60, 72, "PER", "Lloyd Austin", "Lloyd Austin"),
        Mention(80, 94, "PER", "Austin Reaves", "Austin Reaves"),
    ]
    unified = canonicalise_persons(title + body)
    assert unified[0].canonical == "Yoav Gallant"
    assert unified[2].canonical == "Israel"
    # "Austin" could be either of two people: left as written
    assert unified[3].canonical == "Austin"
