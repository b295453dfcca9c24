"""Settings read from the environment, in one place.

Every knob a user can turn without editing code lives here, with its default and
the reason for it. Stage modules take these values as arguments so tests can
override them without touching the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Where the embedded Postgres keeps its data and where caches live when
#: DATABASE_URL is unset. XDG-style default so a user's home stays tidy.
DEFAULT_HOME = Path("~/.local/share/vnnews")


def vnnews_home() -> Path:
    """The data folder (``$VNNEWS_HOME``), created on first use."""
    home = Path(os.environ.get("VNNEWS_HOME") or DEFAULT_HOME).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url_from_env() -> str | None:
    """``DATABASE_URL`` if set and non-empty; None means "use the embedded server"."""
    return os.environ.get("DATABASE_URL") or None


def allow_hosts_from_env() -> frozenset[str]:
    """Hosts exempt from the private-address guard (``VNNEWS_ALLOW_HOSTS``, comma-separated)."""
    raw = os.environ.get("VNNEWS_ALLOW_HOSTS", "")
    return frozenset(h.strip().lower() for h in raw.split(",") if h.strip())


def repo_root() -> Path:
    """The checkout this package runs from (``sql/`` and ``sources.yaml`` live there)."""
    return Path(__file__).resolve().parent.parent
