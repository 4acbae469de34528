"""One module per role; each turns a render Context into the ManagedFiles its role needs."""

from __future__ import annotations

from ..plan import ManagedFile
from ..render import Context
from . import (app, backup, beat, common, firewall, lb, monitoring, pgbouncer, postgres,
               redis, sentinel, web, worker)

# Order matters only for readability of plans: base first, then data tier, then app tier.
ROLE_MODULES = (
    (("db_primary", "db_replica"), postgres),
    (("pgbouncer",), pgbouncer),
    (("redis_master", "redis_replica"), redis),
    (("sentinel",), sentinel),
    (("web", "worker", "beat"), app),
    (("web",), web),
    (("worker",), worker),
    (("beat",), beat),
    (("lb",), lb),
    (("monitoring",), monitoring),
    (("backup",), backup),
)


def files_for(ctx: Context) -> list[ManagedFile]:
    files = list(common.files(ctx)) + firewall.files(ctx)
    for roles, module in ROLE_MODULES:
        if any(ctx.host.has(r) for r in roles):
            files += module.files(ctx)
    return files
