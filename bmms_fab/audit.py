"""`inv audit.units`: systemd's own exposure score (`systemd-analyze security`) of every unit the
tool writes, on every host."""

from __future__ import annotations

import re

from . import executor
from .executor import HostResult, Session
from .inventory import Environment

# exposure levels, best first (systemd-analyze security)
LEVELS = ("PERFECT", "SAFE", "OK", "MEDIUM", "EXPOSED", "UNSAFE", "DANGEROUS")


def units_written(env: Environment, host) -> list[str]:
    """Units whose file or drop-in the tool writes on this host."""
    out = []
    if host.has("web"):
        out.append("bmms-gunicorn@{live}.service")
    if host.has("worker"):
        out.append("bmms-celery-worker.service")
    if host.has("beat"):
        out.append("bmms-celery-beat.service")
    if host.has("pgbouncer"):
        out.append("prometheus-pgbouncer-exporter.service")
    return out


def scores(env: Environment, printer=None) -> dict[str, list[tuple[str, float, str]]]:
    targets = executor.targets(env)
    results: dict[str, list[tuple[str, float, str]]] = {}

    def one(s: Session, r: HostResult) -> None:
        host = env.host(s.target.name)
        units = units_written(env, host)
        if not units:
            return
        live = s.run("cat /srv/bmms/live-color 2>/dev/null || echo blue", "live colour").strip()
        units = [u.format(live=live) for u in units]
        out = s.run("for u in " + " ".join(units) + "; do systemd-analyze security --no-pager $u"
                    " | grep 'Overall exposure level'; done", "security")
        rows = []
        for m in re.finditer(r"Overall exposure level for (\S+): ([\d.]+) (\w+)", out):
            rows.append((m.group(1), float(m.group(2)), m.group(3)))
        results[s.target.name] = rows
    executor.for_each(targets, one, env.ssh["parallel"], printer or executor.Printer(quiet=True))
    return results
