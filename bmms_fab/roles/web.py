"""Web nodes: gunicorn as a blue/green template unit."""

from ..plan import DAEMON_RELOAD, ManagedFile
from ..render import Context


def files(ctx: Context) -> list[ManagedFile]:
    return [
        ctx.file("/etc/bmms/gunicorn.conf.py", "app/gunicorn.conf.py.j2", owner="root",
                 group="bmms", mode=0o640),
        ctx.file("/etc/systemd/system/bmms-gunicorn@.service", "bmms-gunicorn@.service.j2",
                 notify=(DAEMON_RELOAD,)),
    ]
