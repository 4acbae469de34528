"""Celery workers."""

from ..plan import DAEMON_RELOAD, ManagedFile, restart
from ..render import Context


def files(ctx: Context) -> list[ManagedFile]:
    return [ctx.file("/etc/systemd/system/bmms-celery-worker.service",
                     "bmms-celery-worker.service.j2",
                     notify=(DAEMON_RELOAD, restart("bmms-celery-worker")))]
