"""Every host: an nftables firewall from the roles. Only the hosts that need a port reach it;
SSH only from the control address; the load balancer open on 80/443.

Applied safely (agent handler `firewall:nftables`): the current rules are saved and a timer that
restores them is armed *before* the new rules load; the engine then opens a new SSH connection and
only that cancels the timer. A ruleset that locks the operator out rolls itself back."""

from __future__ import annotations

from ..plan import Handler, ManagedFile
from ..render import PORTS, Context

FIREWALL = Handler("firewall", "nftables")
APP = ("web", "worker", "beat")
CACHE = ("redis_master", "redis_replica", "sentinel")
DB = ("db_primary", "db_replica")


def _from(ctx: Context, *roles: str) -> list[str]:
    return sorted({h.address for h in ctx.env.hosts if any(h.has(r) for r in roles)
                   and h.name != ctx.host.name})


def rules(ctx: Context) -> list[tuple[str, list[int], list[str] | None]]:
    """(what, ports, allowed source addresses; None = anyone) for this host's roles."""
    h, out = ctx.host, []
    control = [ctx.env.control_address] if ctx.env.control_address else None
    if h.has("lb"):
        out.append(("load balancer", [PORTS["http"], PORTS["https"]], None))
    if h.has("web"):
        out.append(("gunicorn blue/green", [8001, 8002], _from(ctx, "lb")))
    if any(h.has(r) for r in DB):
        out.append(("postgresql", [PORTS["postgres"]],
                    _from(ctx, "pgbouncer", *DB, "backup", "monitoring")))
    if h.has("pgbouncer"):
        out.append(("pgbouncer", [PORTS["pgbouncer"]], _from(ctx, *APP)))
    if any(h.has(r) for r in ("redis_master", "redis_replica")):
        out.append(("redis", [PORTS["redis"]], _from(ctx, *APP, *CACHE, "monitoring")))
    if h.has("sentinel"):
        out.append(("sentinel", [PORTS["sentinel"]], _from(ctx, *APP, *CACHE, "monitoring")))
    exporters = [PORTS["node_exporter"]]
    exporters += [PORTS["postgres_exporter"]] if any(h.has(r) for r in DB) else []
    exporters += [PORTS["redis_exporter"]] if any(h.has(r) for r in ("redis_master", "redis_replica")) else []
    exporters += [PORTS["pgbouncer_exporter"]] if h.has("pgbouncer") else []
    exporters += [PORTS["nginx_exporter"]] if h.has("lb") else []
    out.append(("exporters", exporters, _from(ctx, "monitoring")))
    if h.has("monitoring"):
        out.append(("prometheus, grafana", [PORTS["prometheus"], PORTS["grafana"]], control))
    return out


def files(ctx: Context) -> list[ManagedFile]:
    if not ctx.vars.get("firewall", True):
        return []
    return [ctx.file("/etc/nftables.conf", "nftables/nftables.conf.j2", mode=0o755,
                     context={"rules": rules(ctx), "control": ctx.env.control_address},
                     check="nft -c -f {path}", notify=(FIREWALL,))]
