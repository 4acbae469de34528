"""Redis master and replicas: auth, maxmemory + allkeys-lru, AOF + RDB, dangerous commands off."""

from ..plan import ManagedFile, restart
from ..render import Context


def files(ctx: Context) -> list[ManagedFile]:
    is_master = ctx.host.has("redis_master")
    return [
        # Sentinel rewrites redis.conf (replicaof) at failover: ours is the included bmms.conf,
        # and redis.conf is written once, naming the master the inventory starts with.
        ctx.file("/etc/redis/bmms.conf", "redis/bmms.conf.j2", owner="redis", group="redis",
                 mode=0o640, secret=True, notify=(restart("redis-server"),)),
        ctx.file("/etc/redis/redis.conf", "redis/redis.conf.j2", context={"is_master": is_master},
                 owner="redis", group="redis", mode=0o640, create_only=True,
                 marker="include /etc/redis/bmms.conf", notify=(restart("redis-server"),)),
        ctx.file("/etc/default/prometheus-redis-exporter", "exporters/redis.default.j2",
                 mode=0o600, secret=True, notify=(restart("prometheus-redis-exporter"),)),
    ]
