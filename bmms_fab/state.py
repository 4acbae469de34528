"""Facts about the running platform that rendering depends on (each web node's live colour,
the current database primary). Kept on the control machine per environment."""

from __future__ import annotations

import json
from pathlib import Path

from .inventory import Environment

STATE_DIR = Path("~/.local/state/bmms-fab").expanduser()


def path(env: Environment) -> Path:
    return STATE_DIR / f"{env.name}.json"


def live_state(env: Environment) -> dict:
    """Render arguments: {'active_colors': {...}, 'db_primary': name or None}."""
    try:
        data = json.loads(path(env).read_text())
    except (OSError, ValueError):
        data = {}
    return {"active_colors": data.get("active_colors", {}), "db_primary": data.get("db_primary")}
