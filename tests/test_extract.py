"""Extraction: hand-written Vietnamese pages in several layouts, the saved gold pages
(scored by the gold's own score.py) and newsim's three templates with faults."""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from difflib import SequenceMatcher
from pathlib import Path

import pytest
from conftest import FIXTURES

from pipeline.extract import (
    VN_TZ,
    Byline,
    decide_published,
    extract,
    find_bylines,
    is_credit_line,
    is_trailer_line,
    parse_timestamp,
    strip_site_name,
)

PAGES = FIXTURES / "pages"


def page(name: str, url: str | None = None):
    return extract((PAGES / name).read_text(encoding="utf-8"), url)


def assert_clean(text: str, *absent: str) -> None:
    assert unicodedata.is_normalized("NFC", text)
    for snippet in absent:
        assert snippet not in text


# --- hand-written pages ---------------------------------------------------------


def test_modern_layout_with_figure_related_box_and_wrong_json_ld_offset():
    result = page("express_figure.html", "https://tinnhanh.example.vn/giao-thong/x.html?utm=1")
    assert result.is_article and result.reason is None
    assert result.title == "Hà Nội mở thêm ba tuyến buýt điện nối sân bay Nội Bài"
    assert result.lead == (
        "Hà Nội - Từ ngày 1/4, ba tuyến buýt điện mới chạy từ nội thành tới "
        "sân bay Nội Bài, giá vé 9.000 đồng một lượt."
    )
    assert result.body.split("\n") == [
        "Sở Giao thông Vận tải Hà Nội cho biết ba tuyến mới gồm tuyến 07 từ Cầu Giấy, tuyến 17 từ "
        "Long Biên và tuyến 86 từ ga Hà Nội. Mỗi tuyến có từ 12 đến 15 xe, giãn cách 15 phút một "
        "chuyến vào giờ cao điểm.",
        "Theo đơn vị vận hành, toàn bộ xe đều chạy điện, có wifi, cổng sạc điện thoại và chỗ để "
        "hành lý. Hành khách có thể thanh toán bằng thẻ ngân hàng hoặc mã QR.",
        "Trong tháng đầu, giá vé được giảm một nửa để thu hút hành khách. Sở dự kiến mỗi ngày ba "
        "tuyến phục vụ khoảng 6.000 lượt khách.",
        "Ông Nguyễn Văn Hùng, một hành khách thường xuyên đi sân bay, nói tuyến buýt mới giúp anh "
        "tiết kiệm gần 300.000 đồng mỗi chuyến so với đi taxi.",
        "Hà Nội đặt mục tiêu đến năm 2030 toàn bộ xe buýt trong thành phố dùng điện hoặc năng "
        "lượng xanh.",
    ]
    # JSON-LD says 09:12:40+08:00, the byline "15/3/2024, 09:12 (GMT+7)": same clock, byline's zone.
    assert result.published_at == datetime(2024, 3, 15, 9, 12, 40, tzinfo=VN_TZ)
    assert result.author == "Minh Châu"  # the right-aligned line, not the publisher's meta author
    assert result.canonical_url == (
        "https://tinnhanh.example.vn/giao-thong/ha-noi-mo-them-ba-tuyen-buyt-dien-4712345.html"
    )
    assert result.language == "vi"


def test_old_layout_with_image_table_hidden_ad_and_upper_case_author():
    result = page("old_image_table.html")
    assert result.is_article
    assert result.title == "Cần Thơ khánh thành cầu bắc qua sông Hậu mới"
    assert result.lead.startswith("TX - Sáng 22-3, cây cầu thứ hai")
    lines = result.body.split("\n")
    assert len(lines) == 4
    assert lines[0].startswith("Cầu dài 1,2 km") and lines[-1].startswith("Theo kế hoạch")
    assert_clean(
        result.body,
        "Ảnh: T.L",
        "Người dân đi bộ",
        "Quảng cáo",
        "THANH LÂM",
        "Tin liên quan",
        "Từ khóa",
        "Phà Cần Thơ ngừng chạy",
    )
    assert result.author == "THANH LÂM"
    assert result.published_at == datetime(2015, 3, 23, 8, 6, tzinfo=VN_TZ)
    assert result.language == "vi"  # the page declares lang="en"


def test_table_layout_keeps_paragraph_order_and_drops_source_trailer_and_comments():
    result = page("portal_table.html")
    assert result.is_article
    assert result.title == "Đà Nẵng thí điểm thu phí xe vào trung tâm giờ cao điểm"
    assert result.lead.startswith("Ô tô cá nhân đi vào khu vực trung tâm")
    lines = result.body.split("\n")
    assert [line.split()[0] for line in lines] == ["Theo", "Phí", "Số", "Sau"]
    assert_clean(
        result.body,
        "Nguồn",
        "Link nguồn",
        "Ảnh",
        "Xem thêm",
        "Kẹt xe giờ cao điểm",
        "Bình luận",
        "Nên làm thêm bãi đỗ xe",
        "|",
        "Tin nổi bật",
        "Từ khóa",
    )
    # The byline, not "Hôm nay: Thứ Bảy, 16/03/2024" nor the comment times.
    assert result.published_at == datetime(2024, 3, 15, 14, 30, tzinfo=VN_TZ)


def test_photo_story_keeps_each_slide_once_and_drops_video_and_photo_credits():
    result = page("photo_story.html")
    assert result.is_article
    lines = result.body.split("\n")
    assert len(lines) == 3
    assert lines[0].startswith("Ruộng bậc thang ở xã La Pán Tẩn")
    assert_clean(result.body, "Video:", "Ảnh: Hoàng Anh")
    assert result.lead.startswith("Yên Bái - Cuối tháng 9")
    # A naive timestamp on a Vietnamese page is Vietnam time.
    assert result.published_at == datetime(2023, 9, 20, 6, 0, tzinfo=VN_TZ)


def test_short_article_with_visible_date_only_and_related_cards():
    result = page("magazine_short.html")
    assert result.is_article
    assert result.title == "Ngân hàng Nhà nước giữ nguyên lãi suất điều hành"
    assert result.lead is None  # the related cards' summaries are not this story's sapo
    assert result.body.startswith("Lãi suất tái cấp vốn tiếp tục ở mức 4,5% một năm")
    assert result.body.endswith("tín dụng tăng đúng kế hoạch.")
    assert "\n" not in result.body
    assert_clean(result.body, "Quang Minh", "Tỷ giá trung tâm", "Bình luận", "Kinh doanh")
    assert result.published_at == datetime(2016, 5, 20, 11, 3, tzinfo=VN_TZ)
    assert result.author == "Lan Hương"


def test_h2_sapo_related_news_box_in_body_and_visible_author():
    result = page("sapo_h2_relatedbox.html")
    assert result.is_article
    assert result.lead.startswith("Từ học kỳ 2, học sinh lớp 3 đến lớp 5")
    lines = result.body.split("\n")
    assert [line.split()[0] for line in lines] == ["Theo", "Bà", "Năm", "Sở"]
    assert_clean(
        result.body,
        "đuối nước vì không biết bơi",
        "Ảnh: NGỌC AN",
        "NGỌC AN",
        "Tags",
        "tuyển sinh lớp 10",
        "Tin cùng chuyên mục",
    )
    assert result.author == "NGỌC AN"  # the byline, not the meta author "Báo Nhịp Sống"
    assert result.published_at == datetime(2024, 12, 2, 7, 0, tzinfo=VN_TZ)


def test_picture_table_inline_related_article_and_utc_json_ld_graph():
    result = page("credit_table_inner_article.html")
    assert result.is_article
    assert result.title == "Giá lúa tăng mạnh, nông dân miền Tây phấn khởi"
    assert len(result.body.split("\n")) == 4
    assert_clean(result.body, "Ảnh: Lan Anh", "Giá gạo xuất khẩu của Việt Nam", "Từ khóa")
    # JSON-LD 12:32Z is the byline's "19:32 (GMT+07:00)": the same instant.
    assert result.published_at == datetime(2024, 12, 1, 19, 32, tzinfo=VN_TZ)
    assert result.author == "Lan Anh"


def test_table_in_body_keeps_cells_without_pipes_and_update_time_loses_to_published():
    result = page("table_in_body.html")
    assert result.is_article
    lines = result.body.split("\n")
    assert lines[2:6] == [
        "Trường\tNguyện vọng 1\tNguyện vọng 2",
        "THPT Nguyễn Thượng Hiền\t24,75\t25,25",
        "THPT Gia Định\t24,00\t24,50",
        "THPT Nguyễn Thị Minh Khai\t23,75\t24,25",
    ]
    assert "|" not in result.body and "---" not in result.body
    # "Cập nhật: 11/07/2024 08:20" is the update; datePublished says 10/7 16:45.
    assert result.published_at == datetime(2024, 7, 10, 16, 45, tzinfo=VN_TZ)


def test_nfd_page_comes_out_nfc_and_equal_to_the_composed_page():
    decomposed = (PAGES / "magazine_nfd.html").read_text(encoding="utf-8")
    assert not unicodedata.is_normalized("NFC", decomposed)
    result, composed = extract(decomposed), page("magazine_short.html")
    for text in (result.title, result.body, result.author):
        assert unicodedata.is_normalized("NFC", text)
    assert (result.title, result.body, result.author, result.published_at) == (
        composed.title,
        composed.body,
        composed.author,
        composed.published_at,
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("listing.html", "listing of links"),
        ("home.html", "no headline or date"),
        ("data_table.html", "data table"),
    ],
)
def test_listing_home_and_data_pages_are_not_articles(name, reason):
    result = page(name)
    assert not result.is_article
    assert result.reason == reason
    assert result.body == ""


def test_truncated_page_gives_what_is_there():
    html = (PAGES / "express_figure.html").read_text(encoding="utf-8")
    result = extract(html[: int(len(html) * 0.6)])
    assert result.title == "Hà Nội mở thêm ba tuyến buýt điện nối sân bay Nội Bài"
    assert result.body.startswith("Sở Giao thông Vận tải Hà Nội cho biết")
    assert "Hà Nội đặt mục tiêu" not in result.body  # cut off


@pytest.mark.parametrize("html", ["", "   ", "<html></html>", "plain text, no markup"])
def test_empty_or_unparseable_input_is_not_an_article(html):
    result = extract(html, "https://example.vn/x")
    assert not result.is_article and result.body == "" and result.reason


# --- the rules one by one -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "local", "offset"),
    [
        ("Thứ sáu, 8/2/2019, 17:08 (GMT+7)", datetime(2019, 2, 8, 17, 8), 7),
        ("23/03/2015 08:06 GMT+7", datetime(2015, 3, 23, 8, 6), 7),
        ("20/05/2016 - 11:03", datetime(2016, 5, 20, 11, 3), None),
        ("Thứ Năm, 05/09/2013 - 12:00", datetime(2013, 9, 5, 12, 0), None),
        ("Thứ Hai, 07:00, 02/12/2024", datetime(2024, 12, 2, 7, 0), None),
        ("Chủ nhật, 1/12/2024 19:32 (GMT+07:00)", datetime(2024, 12, 1, 19, 32), 7),
        ("11:03 PM 20/05/2016", datetime(2016, 5, 20, 23, 3), None),
        ("Cập nhật lúc 08:06 ngày 23/3/2015", datetime(2015, 3, 23, 8, 6), None),
    ],
)
def test_byline_formats(text, local, offset):
    (found,) = find_bylines(f"Tin Nhanh {text} Chia sẻ")
    assert found.local == local
    assert found.offset == (None if offset is None else timezone(timedelta(hours=offset)))


def test_published_time_decisions():
    byline = Byline(datetime(2019, 2, 18, 17, 34), timezone(timedelta(hours=7)), 0, 0)
    wrong_offset = datetime(2019, 2, 18, 17, 34, 20, tzinfo=timezone(timedelta(hours=8)))
    utc = datetime(2019, 2, 18, 10, 34, 20, tzinfo=UTC)
    created = datetime(2019, 2, 18, 12, 54, 16, tzinfo=VN_TZ)
    assert decide_published(wrong_offset, byline) == datetime(2019, 2, 18, 17, 34, 20, tzinfo=VN_TZ)
    assert decide_published(utc, byline) == utc  # same instant: kept
    assert decide_published(created, byline) == datetime(2019, 2, 18, 17, 34, tzinfo=VN_TZ)
    assert decide_published(datetime(2020, 1, 1, 8, 0), None) == datetime(
        2020, 1, 1, 8, 0, tzinfo=VN_TZ
    )
    assert decide_published(None, None) is None
    assert parse_timestamp("2023-11-02T19:20:45+0700") == datetime(
        2023, 11, 2, 19, 20, 45, tzinfo=VN_TZ
    )
    assert parse_timestamp("2023-11-02T12:20:45Z").utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("line", "trailer"),
    [
        ("Võ Hải", True),
        ("XUÂN LONG", True),
        ("Giang Huy - Hoàng Phương", True),
        ("Minh Anh (tổng hợp)", True),
        ("Theo Reuters", True),
        ("(Theo VnExpress)", True),
        ("Nguồn: [Link nguồn]Nguồn: [Link nguồn]", True),
        ("Bài và ảnh: Hoàng Phong", True),
        ("Hà Nội đặt mục tiêu đến năm 2030 dùng xe điện.", False),
        ("Theo kế hoạch, từ tháng sau các tuyến xe buýt số 5 và số 9 sẽ đi qua cầu mới.", False),
    ],
)
def test_trailer_lines(line, trailer):
    assert is_trailer_line(line, []) is trailer


@pytest.mark.parametrize(
    ("line", "credit"),
    [
        ("Ảnh: Bankrate.", True),
        ("Mặt bia mộ ghi thông tin các liệt sĩ. Ảnh: Võ Hải.", True),
        ("Tuần tra trong băng tuyết. Video: Đồn biên phòng Xín Cái", True),
        ("Ảnh minh họa: Thời sự. (Ảnh: TTXVN)", True),
        ("Người dân đi bộ trên cầu trong ngày khánh thành - Ảnh: T.L", True),
        ("Một góc chợ nổi Cái Răng (Ảnh minh họa)", True),
        (
            "Chủ tịch nước dâng hương tại đền thờ. Ảnh:VOV Ông Vương Bình Thạnh cho rằng: "
            "khu di tích ngày càng khang trang và thu hút đông đảo du khách.",
            False,
        ),
    ],
)
def test_credit_lines(line, credit):
    assert is_credit_line(line) is credit


def test_site_names_come_off_titles():
    assert (
        strip_site_name("Thanh tra vụ chặt cây xanh - Chính trị - Xã hội - Tuổi Trẻ Online", None)
        == "Thanh tra vụ chặt cây xanh"
    )
    assert (
        strip_site_name("Hà Nội - Hải Phòng thông xe cao tốc mới sau ba năm thi công", None)
        == "Hà Nội - Hải Phòng thông xe cao tốc mới sau ba năm thi công"
    )


# --- the saved gold pages (../shared) -------------------------------------------


def load_scorer(shared: Path):
    spec = importlib.util.spec_from_file_location("gold_score", shared / "data/pages/score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_gold_page(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


@pytest.mark.shared
def test_gold_pages_meet_the_acceptance_targets(shared_dir):
    folder = shared_dir / "data/pages"
    scorer = load_scorer(shared_dir)
    rows = []
    for gold in scorer.load_jsonl(folder / "pages.jsonl"):
        result = extract(read_gold_page(folder / gold["path"]), gold["url"])
        prediction = {
            "title": result.title,
            "body": result.body,
            "published_at": result.published_at.isoformat(),
        }
        rows.append(scorer.score_page(gold, prediction))
    summary = scorer.summarise(rows)
    assert summary["body_f1"] >= 0.97
    for row in rows:
        assert row["title"], row["id"]
        assert row["date_1min"] in (True, None), row["id"]
        for leak in ("cap_leak", "bp_leak", "trl_leak"):
            assert not row[leak], (row["id"], leak)
    for negative in scorer.load_jsonl(folder / "negatives.jsonl"):
        result = extract(read_gold_page(folder / negative["path"]), negative["url"])
        assert not result.is_article and not scorer.tokens(result.body), negative["path"]


# --- newsim's templates and faults (../shared) ------------------------------------


def overlap_f1(truth: str, predicted: str) -> float:
    a, b = " ".join(truth.split()), " ".join(predicted.split())
    if not a or not b:
        return 0.0
    matched = sum(m.size for m in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return 2 * matched / (len(a) + len(b))


@pytest.mark.shared
@pytest.mark.slow
def test_newsim_templates_and_faults(shared_dir, tmp_path):
    source = shared_dir / "data/vmds/articles.jsonl"
    subset = tmp_path / "articles.jsonl"
    with open(source, encoding="utf-8") as f:
        subset.write_text("".join(f.readline() for _ in range(60)), encoding="utf-8")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            str(shared_dir / "newsim/newsim.py"),
            "--articles",
            str(subset),
            "--faults",
            "nfd:5,html-truncated:3",
            "--static-out",
            str(site),
        ],
        check=True,
        capture_output=True,
    )
    truth = json.loads((site / "truth.json").read_text(encoding="utf-8"))
    templates, faults = set(), set()
    for article in truth["articles"]:
        path = site / article["url"][len(truth["base_url"]) :].lstrip("/")
        result = extract(path.read_bytes().decode("utf-8", errors="replace"), article["url"])
        faults.update(article["faults"])
        if "html-truncated" in article["faults"]:
            continue  # only 60% of the page exists; it must merely not fail
        templates.add(article["template"])
        assert result.is_article, article["url"]
        assert overlap_f1(article["body"], result.body) >= 0.98, article["url"]
        assert unicodedata.is_normalized("NFC", result.body)
        assert result.title == article["title"]
        assert result.published_at == datetime.fromisoformat(article["published_at"])
    assert templates == {"express", "portal", "magazine"}
    assert faults == {"nfd", "html-truncated"}
