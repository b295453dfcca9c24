"""The sources registry: which publishers to crawl and how politely.

The file format is documented at the top of ``pipeline/sources.yaml`` and kept
stable. Loading validates everything up front and names the offending source
and key, because a typo in a registry of twenty publishers is otherwise found
only when a nightly crawl quietly skips one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline import config, urls

DEFAULT_SOURCES_FILE = Path(__file__).with_name("sources.yaml")

SOURCE_KEYS = {
    "name",
    "homepage",
    "feeds",
    "sitemaps",
    "archive_url_pattern",
    "categories",
    "min_host_interval",
}
SETTINGS_KEYS = {"allow_hosts", "min_host_interval", "user_agent"}


class SourcesError(ValueError):
    """The sources file is missing, unreadable or malformed; the message says where."""


@dataclass(frozen=True)
class Source:
    name: str
    homepage: str
    feeds: tuple[str, ...]
    sitemaps: tuple[str, ...] = ()
    archive_url_pattern: str | None = None
    categories: tuple[str, ...] = ()
    min_host_interval: float | None = None


@dataclass(frozen=True)
class Settings:
    """File-wide crawl settings; the environment can add allow-listed hosts."""

    allow_hosts: frozenset[str] = frozenset()
    min_host_interval: float | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class SourcesFile:
    path: Path
    settings: Settings
    sources: tuple[Source, ...] = field(default_factory=tuple)

    def select(self, names: list[str] | tuple[str, ...]) -> tuple[Source, ...]:
        """The sources named (case-insensitive), all if none; unknown names are an error."""
        if not names:
            return self.sources
        by_name = {s.name.casefold(): s for s in self.sources}
        unknown = [n for n in names if n.casefold() not in by_name]
        if unknown:
            known = ", ".join(s.name for s in self.sources)
            raise SourcesError(f"unknown source(s) {', '.join(unknown)}; known: {known}")
        return tuple(by_name[n.casefold()] for n in names)


def load_sources(path: Path | str | None = None) -> SourcesFile:
    """Read and validate a sources file (the shipped registry by default)."""
    path = Path(path) if path else DEFAULT_SOURCES_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourcesError(f"cannot read sources file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SourcesError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list):
        raise SourcesError(f"{path}: expected a top-level 'sources:' list")
    settings = _settings(path, raw.get("settings") or {})
    sources = tuple(_source(path, i, entry) for i, entry in enumerate(raw["sources"], 1))
    names = [s.name.casefold() for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SourcesError(f"{path}: duplicate source name(s): {', '.join(duplicates)}")
    return SourcesFile(path=path, settings=settings, sources=sources)


def _settings(path: Path, raw: Any) -> Settings:
    if not isinstance(raw, dict):
        raise SourcesError(f"{path}: 'settings' must be a mapping")
    _reject_unknown(path, "settings", raw, SETTINGS_KEYS)
    allow = raw.get("allow_hosts") or []
    if not isinstance(allow, list) or not all(isinstance(h, str) for h in allow):
        raise SourcesError(f"{path}: settings.allow_hosts must be a list of host names")
    return Settings(
        allow_hosts=frozenset(h.strip().lower() for h in allow) | config.allow_hosts_from_env(),
        min_host_interval=_seconds(
            path, "settings.min_host_interval", raw.get("min_host_interval")
        ),
        user_agent=raw.get("user_agent"),
    )


def _source(path: Path, index: int, raw: Any) -> Source:
    where = f"{path}: source #{index}"
    if not isinstance(raw, dict):
        raise SourcesError(f"{where} must be a mapping with name, homepage and feeds")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SourcesError(f"{where} has no name")
    where = f"{path}: source {name!r}"
    _reject_unknown(path, f"source {name!r}", raw, SOURCE_KEYS)
    homepage = raw.get("homepage")
    if not isinstance(homepage, str) or not urls.is_http_url(homepage):
        raise SourcesError(f"{where}: homepage must be an http(s) URL")
    return Source(
        name=name.strip(),
        homepage=homepage,
        feeds=_url_list(where, "feeds", raw.get("feeds"), required=True),
        sitemaps=_url_list(where, "sitemaps", raw.get("sitemaps"), required=False),
        archive_url_pattern=raw.get("archive_url_pattern"),
        categories=tuple(str(c) for c in raw.get("categories") or ()),
        min_host_interval=_seconds(path, f"{name}.min_host_interval", raw.get("min_host_interval")),
    )


def _url_list(where: str, key: str, value: Any, *, required: bool) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or (required and not value):
        raise SourcesError(f"{where}: '{key}' must be a non-empty list of URLs")
    bad = [u for u in value if not isinstance(u, str) or not urls.is_http_url(u)]
    if bad:
        raise SourcesError(f"{where}: '{key}' has entries that are not http(s) URLs: {bad}")
    return tuple(value)


def _seconds(path: Path, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SourcesError(f"{path}: {key} must be a number of seconds >= 0")
    return float(value)


def _reject_unknown(path: Path, where: str, raw: dict, allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SourcesError(
            f"{path}: {where} has unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
