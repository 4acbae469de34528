"""PgBouncer in front of the primary (bmms) and the replicas (bmms_ro), transaction pooling."""

from ..plan import DAEMON_RELOAD, ManagedFile, reload, restart
from ..render import TEMPLATES_DIR, Context

SHIM = "/usr/local/lib/bmms-fab/pgbouncer_exporter_shim.py"


def files(ctx: Context) -> list[ManagedFile]:
    return [
        ctx.file("/etc/pgbouncer/databases.ini", "pgbouncer/databases.ini.j2", owner="postgres",
                 group="postgres", mode=0o640, notify=(reload("pgbouncer"),)),
        ctx.file("/etc/pgbouncer/pgbouncer.ini", "pgbouncer/pgbouncer.ini.j2", owner="postgres",
                 group="postgres", mode=0o640, notify=(restart("pgbouncer"),)),
        ctx.file("/etc/pgbouncer/userlist.txt", "pgbouncer/userlist.txt.j2", owner="postgres",
                 group="postgres", mode=0o600, secret=True, notify=(reload("pgbouncer"),)),
        ctx.file("/etc/prometheus-pgbouncer-exporter.conf", "exporters/pgbouncer.conf.j2",
                 notify=(restart("prometheus-pgbouncer-exporter"),)),
        ctx.file("/etc/bmms/pgbouncer-exporter.env", "exporters/pgbouncer.env.j2", mode=0o600,
                 secret=True, notify=(restart("prometheus-pgbouncer-exporter"),)),
        ManagedFile(SHIM, (TEMPLATES_DIR / "exporters/pgbouncer_exporter_shim.py").read_bytes(),
                    notify=(restart("prometheus-pgbouncer-exporter"),)),
        ctx.file("/etc/systemd/system/prometheus-pgbouncer-exporter.service.d/bmms.conf",
                 "exporters/pgbouncer.dropin.conf.j2",
                 notify=(DAEMON_RELOAD, restart("prometheus-pgbouncer-exporter"))),
    ]
