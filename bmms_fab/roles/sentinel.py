"""Redis Sentinel. Sentinel rewrites its own config, so the file is written only when absent."""

from ..plan import ManagedFile, restart
from ..render import Context


def files(ctx: Context) -> list[ManagedFile]:
    return [
        ctx.file("/etc/redis/sentinel.conf", "redis/sentinel.conf.j2", owner="redis",
                 group="redis", mode=0o640, secret=True, create_only=True,
                 notify=(restart("redis-sentinel"),)),
    ]
