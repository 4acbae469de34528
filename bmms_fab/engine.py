"""Converge files onto hosts: the library entry point.

    results = converge(targets, plans)   # {host: HostResult}

After connecting, a no-op converge costs one SSH round trip per host (the agent's `facts`, which
also returns handlers owed by an earlier failed run); a change costs one more (`apply`).
"""

from __future__ import annotations

import base64
from typing import Callable

from . import converge as cv
from .errors import StepError
from .executor import HostResult, Printer, Session, Target, for_each
from .plan import HostPlan


def converge_session(session: Session, plan: HostPlan, result: HostResult, *,
                     dry_run: bool = False, diff: bool = False,
                     mask: Callable[[str], str] | None = None,
                     printer: Printer | None = None) -> cv.Changes:
    """Converge one host over an open session; fills `result`."""
    printer = printer or Printer()
    host = session.target.name
    facts = session.agent("facts", {"paths": [f.path for f in plan.files],
                                    "markers": {f.path: f.marker for f in plan.files
                                                if f.create_only}})
    changes = cv.compare(plan, facts)
    if changes.pending:
        printer(host, f"handlers owed by an earlier run: {', '.join(changes.pending)}")
    if diff and changes.files:
        old = session.agent("read", {"paths": [c.path for c in changes.files if c.kind != "meta"]})
        for c in changes.files:
            raw = old["contents"].get(c.path)
            printer(host, cv.diff(c, base64.b64decode(raw) if raw else None, mask))
    for c in changes.files:
        printer(host, f"{c.kind:<6} {c.path}")
    if dry_run:
        result.changed = [c.path for c in changes.files]
        result.handlers = [f"(would) {h}" for h in changes.all_handlers]
        result.status = "changed" if not changes.empty else "ok"
        return changes
    if changes.empty:
        return changes
    res = session.agent("apply", cv.apply_payload(changes))
    result.changed = res["written"]
    result.handlers = res["handlers_run"]
    result.status = "changed"
    for h in res["handlers_run"]:
        printer(host, f"ran    {h}")
    if "firewall:nftables" in res["handlers_run"]:
        confirm_firewall(session, printer)
    if res["error"]:
        err = res["error"]
        raise StepError(host, err["step"], err["cause"].splitlines()[0] if err["cause"] else "",
                        err.get("exit"), "\n".join(err["cause"].splitlines()[1:])[-1500:])
    return changes


def confirm_firewall(session: Session, printer: Printer) -> None:
    """New firewall rules stay only if a *new* SSH connection still gets in: that connection
    cancels the timer which would restore the previous rules."""
    try:
        with Session(session.target) as fresh:
            fresh.run("systemctl stop bmms-fw-rollback.timer", "confirm firewall")
    except Exception as exc:
        raise StepError(session.target.name, "confirm firewall",
                        f"no new SSH connection after the firewall change ({exc}); the previous "
                        f"rules come back within 60 s") from None
    printer(session.target.name, "firewall confirmed over a new SSH connection")


def converge(targets: list[Target], plans: dict[str, HostPlan], *, parallel: int = 16,
             dry_run: bool = False, diff: bool = False,
             mask: Callable[[str], str] | None = None,
             printer: Printer | None = None) -> dict[str, HostResult]:
    """Converge each target to its plan in parallel; return per-host results (never raises for
    one host's failure: see HostResult.error)."""
    printer = printer or Printer()

    def one(session: Session, result: HostResult) -> None:
        converge_session(session, plans[session.target.name], result, dry_run=dry_run,
                         diff=diff, mask=mask, printer=printer)

    return for_each([t for t in targets if t.name in plans], one, parallel, printer)
