"""Capacity planner: size the platform from the number of MOAs and users.

Every figure comes from a formula below, so a different site gets a consistent plan. For 44 MOAs
and 1,000 users the formulas reproduce the platform's published sizing. One published figure does
not follow from its own stated formula: "3,720 database connections = 3 per user + 50 + 50" (that
formula gives 3,100). Neither number is used: with PgBouncer in transaction mode the server never
sees one connection per user, only the pool. PostgreSQL `max_connections` is therefore sized from the
pool (pool + reserve pool + admin/monitoring + replication + superuser reserve, rounded up to 50).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import UsageError

USERS_PER_APP_SERVER = 200        # one 8-core app server per 200 concurrent users
APP_SERVER_CORES = 8
APP_SERVER_MEMORY_GB = 6
GUNICORN_THREADS = 2
USERS_PER_CELERY_WORKER = 200
CELERY_CORES = 2
CELERY_MEMORY_GB = 2
PGBOUNCER_POOL = 50               # server connections per database/user pair
PGBOUNCER_RESERVE_POOL = 10
PG_ADMIN_CONNECTIONS = 20         # exporters, backups, migrations, psql
PG_SUPERUSER_RESERVED = 3
DB_SERVER_CORES = 8
DB_SERVER_MEMORY_GB = 32
DB_REPLICAS = 2
REDIS_MB_PER_USER = 8             # sessions, cache and Celery broker traffic
REDIS_MAXMEMORY_SHARE = 0.75      # leave room for the fork during RDB/AOF rewrite
REDIS_REPLICAS = 2
SENTINELS = 3
STORAGE_MB_PER_USER = 100
REQUESTS_PER_USER_PER_MIN = 10
PEAK_FACTOR = 2
AVG_RESPONSE_KIB = 512
# Monthly prices (USD)
PRICE_APP_SERVER = 150
PRICE_DB_PRIMARY = 200
PRICE_DB_REPLICA = 100
PRICE_CACHE_NODE = 50
PRICE_CELERY_WORKER = 10
PRICE_STORAGE_PER_GB = 0.10
PRICE_NETWORK = 50                # load balancer and traffic, flat


@dataclass(frozen=True)
class Plan:
    moas: int
    users: int
    users_per_moa: int
    app: dict
    database: dict
    pgbouncer: dict
    cache: dict
    celery: dict
    storage_gb: int
    traffic: dict
    cost: dict

    def to_dict(self) -> dict:
        return asdict(self)


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _pow2(value: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(value, 1))))


def plan(moas: int, users: int) -> Plan:
    """Size the platform for `moas` ministries and `users` concurrent users."""
    for name, value in (("moas", moas), ("users", users)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"--{name} must be a whole number of at least 1, got {value!r}")
    app_servers = math.ceil(users / USERS_PER_APP_SERVER)
    workers = 2 * APP_SERVER_CORES + 1
    celery_workers = math.ceil(users / USERS_PER_CELERY_WORKER)
    pg_max = _round_up(PGBOUNCER_POOL + PGBOUNCER_RESERVE_POOL + PG_ADMIN_CONNECTIONS
                       + DB_REPLICAS + 2 + PG_SUPERUSER_RESERVED, 50)
    db_mem_mb = DB_SERVER_MEMORY_GB * 1024
    redis_gb = _pow2(users * REDIS_MB_PER_USER / 1024)
    storage_gb = math.ceil(users * STORAGE_MB_PER_USER / 1000)
    avg_rps = users * REQUESTS_PER_USER_PER_MIN / 60
    peak_rps = avg_rps * PEAK_FACTOR
    peak_gbps = math.ceil(peak_rps * AVG_RESPONSE_KIB * 1024 * 8 / 1e9 * 10) / 10
    cost = {
        "app_servers": app_servers * PRICE_APP_SERVER,
        "database": PRICE_DB_PRIMARY + DB_REPLICAS * PRICE_DB_REPLICA,
        "cache": (1 + REDIS_REPLICAS) * PRICE_CACHE_NODE,
        "celery": celery_workers * PRICE_CELERY_WORKER,
        "storage": math.ceil(storage_gb * PRICE_STORAGE_PER_GB),
        "network": PRICE_NETWORK,
    }
    monthly = sum(cost.values())
    return Plan(
        moas=moas, users=users, users_per_moa=math.ceil(users / moas),
        app={"servers": app_servers, "cores": APP_SERVER_CORES,
             "memory_gb": APP_SERVER_MEMORY_GB, "gunicorn_workers": workers,
             "gunicorn_threads": GUNICORN_THREADS},
        database={"primary": 1, "replicas": DB_REPLICAS, "cores": DB_SERVER_CORES,
                  "memory_gb": DB_SERVER_MEMORY_GB, "max_connections": pg_max,
                  "shared_buffers_mb": db_mem_mb // 4,
                  "effective_cache_size_mb": db_mem_mb * 3 // 4,
                  "work_mem_mb": db_mem_mb // 4 // pg_max},
        pgbouncer={"max_client_conn": _round_up(users, 100), "pool_size": PGBOUNCER_POOL,
                   "reserve_pool": PGBOUNCER_RESERVE_POOL, "pool_mode": "transaction"},
        cache={"memory_gb_per_instance": redis_gb, "masters": 1, "replicas": REDIS_REPLICAS,
               "sentinels": SENTINELS,
               "maxmemory_mb": int(redis_gb * 1024 * REDIS_MAXMEMORY_SHARE)},
        celery={"workers": celery_workers, "cores": CELERY_CORES, "memory_gb": CELERY_MEMORY_GB,
                "concurrency": 2 * CELERY_CORES},
        storage_gb=storage_gb,
        traffic={"avg_rps": round(avg_rps), "peak_rps": round(peak_rps),
                 "peak_gbps": peak_gbps},
        cost={**cost, "monthly": monthly, "annual": monthly * 12},
    )


def sizing_vars(p: Plan) -> dict:
    """The inventory `vars` a plan decides (each may be overridden in hosts.yml)."""
    return {
        "gunicorn_workers": p.app["gunicorn_workers"],
        "gunicorn_threads": p.app["gunicorn_threads"],
        "celery_concurrency": p.celery["concurrency"],
        "pg_max_connections": p.database["max_connections"],
        "pg_shared_buffers_mb": p.database["shared_buffers_mb"],
        "pg_effective_cache_size_mb": p.database["effective_cache_size_mb"],
        "pg_work_mem_mb": p.database["work_mem_mb"],
        "pgbouncer_max_client_conn": p.pgbouncer["max_client_conn"],
        "pgbouncer_pool_size": p.pgbouncer["pool_size"],
        "redis_maxmemory_mb": p.cache["maxmemory_mb"],
    }


def report(p: Plan) -> str:
    """A human-readable plan."""
    c = p.cost
    lines = [
        f"Capacity plan for {p.moas} MOAs / {p.users:,} concurrent users "
        f"({p.users_per_moa} users per MOA)",
        f"  App servers : {p.app['servers']} x {p.app['cores']} cores / {p.app['memory_gb']} GB, "
        f"{p.app['gunicorn_workers']} gunicorn workers x {p.app['gunicorn_threads']} threads",
        f"  Database    : 1 primary + {p.database['replicas']} streaming replicas, "
        f"{p.database['cores']} cores / {p.database['memory_gb']} GB, max_connections "
        f"{p.database['max_connections']}, shared_buffers {p.database['shared_buffers_mb']} MB",
        f"  PgBouncer   : {p.pgbouncer['max_client_conn']:,} clients / pool "
        f"{p.pgbouncer['pool_size']} ({p.pgbouncer['pool_mode']} pooling)",
        f"  Redis       : {p.cache['memory_gb_per_instance']} GB per instance, 1 master + "
        f"{p.cache['replicas']} replicas + {p.cache['sentinels']} sentinels "
        f"(maxmemory {p.cache['maxmemory_mb']} MB)",
        f"  Celery      : {p.celery['workers']} workers x {p.celery['cores']} cores / "
        f"{p.celery['memory_gb']} GB, concurrency {p.celery['concurrency']}",
        f"  Storage     : {p.storage_gb} GB",
        f"  Traffic     : {p.traffic['avg_rps']} avg / {p.traffic['peak_rps']} peak req/s, "
        f"{p.traffic['peak_gbps']} Gbps peak",
        f"  Cost        : ${c['app_servers']:,} app + ${c['database']:,} database + "
        f"${c['cache']:,} cache + ${c['celery']:,} celery + ${c['storage']:,} storage + "
        f"${c['network']:,} network = ${c['monthly']:,} per month, ${c['annual']:,} per year",
    ]
    return "\n".join(lines)
