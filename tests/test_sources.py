"""The sources registry: the shipped file is valid and errors name the culprit."""

import pytest

from pipeline.sources import DEFAULT_SOURCES_FILE, SourcesError, load_sources


def test_shipped_registry_lists_real_vietnamese_publishers():
    registry = load_sources()
    names = {s.name for s in registry.sources}
    assert len(names) >= 15
    for expected in (
        "VnExpress",
        "Tuổi Trẻ",
        "Thanh Niên",
        "Dân trí",
        "VietNamNet",
        "Znews",
        "Người Lao Động",
        "Lao Động",
        "Tiền Phong",
        "VOV",
        "Nhân Dân",
        "VTV",
        "Báo Quốc tế",
        "24h",
        "CafeF",
    ):
        assert expected in names
    assert all(s.feeds and s.homepage.startswith("https://") for s in registry.sources)
    assert registry.path == DEFAULT_SOURCES_FILE


def test_allow_hosts_from_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "sources.yaml"
    path.write_text(
        "settings:\n  allow_hosts: [127.0.0.1]\n"
        "sources:\n  - name: Local\n    homepage: http://127.0.0.1:8000/\n"
        "    feeds: [http://127.0.0.1:8000/rss]\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("VNNEWS_ALLOW_HOSTS", "localhost, News.Internal ")
    registry = load_sources(path)
    assert registry.settings.allow_hosts == {"127.0.0.1", "localhost", "news.internal"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("feeds: []", "top-level 'sources:' list"),
        ("sources:\n  - homepage: https://a.vn\n    feeds: [https://a.vn/rss]", "has no name"),
        (
            "sources:\n  - name: A\n    homepage: ftp://a.vn\n    feeds: [https://a.vn/rss]",
            "homepage must be an http(s) URL",
        ),
        ("sources:\n  - name: A\n    homepage: https://a.vn\n    feeds: []", "non-empty list"),
        (
            "sources:\n  - name: A\n    homepage: https://a.vn\n    feeds: [file:///etc/passwd]",
            "not http(s) URLs",
        ),
        (
            "sources:\n  - name: A\n    homepage: https://a.vn\n    feed: [https://a.vn/rss]",
            "unknown key(s) feed",
        ),
        (
            "sources:\n  - {name: A, homepage: 'https://a.vn', feeds: ['https://a.vn/r']}\n"
            "  - {name: a, homepage: 'https://b.vn', feeds: ['https://b.vn/r']}",
            "duplicate",
        ),
        ("sources: [\n", "not valid YAML"),
    ],
)
def test_malformed_files_give_clear_errors(tmp_path, text, message):
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourcesError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_sources(path)


def test_missing_file_and_unknown_source_names(tmp_path):
    with pytest.raises(SourcesError, match="cannot read"):
        load_sources(tmp_path / "nope.yaml")
    with pytest.raises(SourcesError, match="unknown source"):
        load_sources().select(["Báo Không Tồn Tại"])
    assert [s.name for s in load_sources().select(["vnexpress"])] == ["VnExpress"]
