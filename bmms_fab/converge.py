"""Pure converge logic: what differs between a HostPlan and a host's facts, which handlers that
owes, and the diff to show. No I/O."""

from __future__ import annotations

import base64
import difflib
from dataclasses import dataclass, field

from .agent import order_handlers
from .plan import HostPlan, ManagedFile


@dataclass(frozen=True)
class FileChange:
    file: ManagedFile
    kind: str          # "create", "update", "meta" (mode/owner only)

    @property
    def path(self) -> str:
        return self.file.path


@dataclass
class Changes:
    host: str
    files: list[FileChange] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)        # owed by these changes
    pending: list[str] = field(default_factory=list)         # owed by an earlier failed run

    @property
    def all_handlers(self) -> list[str]:
        return order_handlers(self.pending + self.handlers)

    @property
    def empty(self) -> bool:
        return not self.files and not self.all_handlers


def compare(plan: HostPlan, facts: dict) -> Changes:
    """Files whose content, mode or owner differ from the host, and the handlers they notify."""
    changes = Changes(plan.host, pending=list(facts.get("pending") or []))
    have = facts.get("files") or {}
    handlers: list[str] = []
    for f in plan.files:
        cur = have.get(f.path)
        if cur is None:
            kind = "create"
        elif f.create_only and cur.get("managed", True):
            continue             # ours, and the service keeps it up to date itself
        elif f.create_only:
            kind = "update"      # a packaged default: replace it once
        elif cur["sha256"] != f.sha256:
            kind = "update"
        elif (cur["mode"], cur["owner"], cur["group"]) != (f.mode, f.owner, f.group):
            kind = "meta"
        else:
            continue
        changes.files.append(FileChange(f, kind))
        if kind != "meta":
            handlers += [str(h) for h in f.notify]
    changes.handlers = order_handlers(handlers)
    return changes


def apply_payload(changes: Changes) -> dict:
    """What the agent's `apply` gets: every changed file, and the handlers owed."""
    files = []
    for c in changes.files:
        f = c.file
        entry = {"path": f.path, "mode": f.mode, "owner": f.owner, "group": f.group,
                 "check": f.check}
        if c.kind == "meta":
            entry["meta_only"] = True
        else:
            entry["content"] = base64.b64encode(f.content).decode()
        files.append(entry)
    return {"files": files, "handlers": changes.handlers}


def diff(change: FileChange, old: bytes | None, mask) -> str:
    """A unified diff of one change; secret files have every known secret value masked."""
    f = change.file
    if change.kind == "meta":
        return f"--- {f.path}: mode/owner -> {f.mode:04o} {f.owner}:{f.group}\n"
    try:
        old_text = (old or b"").decode()
        new_text = f.content.decode()
    except UnicodeDecodeError:
        return f"--- {f.path}: binary file differs\n"
    if f.secret or mask is not None:
        old_text, new_text = mask(old_text), mask(new_text)
    lines = difflib.unified_diff(old_text.splitlines(keepends=True),
                                 new_text.splitlines(keepends=True),
                                 fromfile=f"{f.path} (on host)" if old is not None else "/dev/null",
                                 tofile=f"{f.path} (new)")
    text = "".join(l if l.endswith("\n") else l + "\n" for l in lines)
    return text or f"--- {f.path}: (secret values changed; masked)\n"
