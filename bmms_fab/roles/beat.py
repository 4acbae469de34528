"""Celery beat, the one scheduler."""

from ..plan import DAEMON_RELOAD, ManagedFile, try_restart
from ..render import Context


def files(ctx: Context) -> list[ManagedFile]:
    return [ctx.file("/etc/systemd/system/bmms-celery-beat.service",
                     "bmms-celery-beat.service.j2",
                     notify=(DAEMON_RELOAD, try_restart("bmms-celery-beat")))]
