"""Glue between Invoke tasks and the library: load the inventory, map typed errors to exit codes."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from invoke import Exit

from . import PROJECT_ROOT, inventory
from .errors import BmmsError, UsageError


def inventory_path() -> Path:
    return Path(os.environ.get("BMMS_INVENTORY", PROJECT_ROOT / "hosts.yml"))


def load_env(hosts: str | None) -> inventory.Environment:
    """The environment named by --hosts, from a validated inventory (no connection opened)."""
    if not hosts:
        raise UsageError("--hosts ENV is required (an environment of hosts.yml, e.g. lab, prod)")
    return inventory.load(inventory_path()).env(hosts)


def reports_errors(func):
    """Turn BmmsError into a clean message on stderr and the error's exit code."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BmmsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise Exit(code=exc.exit_code) from None
    return wrapper
