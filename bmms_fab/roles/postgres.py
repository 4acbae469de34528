"""PostgreSQL primary and streaming replicas (Debian's cluster 15/main)."""

from ..plan import ManagedFile, reload, restart
from ..render import PG_CONF_DIR, PG_VERSION, Context

UNIT = f"postgresql@{PG_VERSION}-main"


def slot_name(host_name: str) -> str:
    return "replica_" + host_name.replace("-", "_")


def files(ctx: Context) -> list[ManagedFile]:
    is_primary = ctx.host.name == ctx.primary.name
    extra = {"is_primary": is_primary, "slot_name": slot_name(ctx.host.name)}
    return [
        ctx.file(f"{PG_CONF_DIR}/conf.d/bmms.conf", "postgresql/bmms.conf.j2", context=extra,
                 owner="postgres", group="postgres", notify=(restart(UNIT),)),
        ctx.file(f"{PG_CONF_DIR}/conf.d/replication.conf", "postgresql/replication.conf.j2",
                 context=extra, owner="postgres", group="postgres", notify=(reload(UNIT),)),
        ctx.file(f"{PG_CONF_DIR}/pg_hba.conf", "postgresql/pg_hba.conf.j2", owner="postgres",
                 group="postgres", mode=0o640, notify=(reload(UNIT),)),
        ctx.file("/var/lib/postgresql/.pgpass", "postgresql/pgpass.j2", owner="postgres",
                 group="postgres", mode=0o600, secret=True),
        ctx.file("/etc/default/prometheus-postgres-exporter", "exporters/postgres.default.j2",
                 mode=0o600, secret=True, notify=(restart("prometheus-postgres-exporter"),)),
    ]
