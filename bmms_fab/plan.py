"""What a converge wants on a host: files (content, mode, owner) and the handlers they notify."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Handler:
    """A service action owed when a file it watches changes: `restart` or `reload` of a unit."""

    action: str
    unit: str

    def __post_init__(self) -> None:
        if self.action not in ("restart", "reload", "try-restart", "daemon-reload", "firewall"):
            raise ValueError(f"unknown handler action {self.action!r}")

    def __str__(self) -> str:
        return f"{self.action}:{self.unit}"

    @classmethod
    def parse(cls, text: str) -> "Handler":
        action, _, unit = text.partition(":")
        return cls(action, unit)


def restart(unit: str) -> Handler:
    return Handler("restart", unit)


def reload(unit: str) -> Handler:
    return Handler("reload", unit)


def try_restart(unit: str) -> Handler:
    """Restart if the unit exists and runs (Grafana only where its package is installed)."""
    return Handler("try-restart", unit)


DAEMON_RELOAD = Handler("daemon-reload", "systemd")


@dataclass(frozen=True)
class ManagedFile:
    """One file the tool owns on a host."""

    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    notify: tuple[Handler, ...] = ()
    secret: bool = False          # holds secret values: diffs show it masked
    create_only: bool = False     # the service rewrites it (sentinel.conf): write only if absent
    marker: str = "Managed by bmms-fab"   # create_only: a file without it is replaced once
    check: str | None = None      # a command that validates the new file before it is installed

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class HostPlan:
    """Everything a host should have: its files, in order."""

    host: str
    files: tuple[ManagedFile, ...] = field(default_factory=tuple)

    def by_path(self) -> dict[str, ManagedFile]:
        return {f.path: f for f in self.files}
