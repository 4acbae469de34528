"""Restore a backup: the database (always), and optionally Redis and media. The manifest is
checked first; PgBouncer pauses the app's database while it is replaced, so no client sees a
half-restored database (clients wait, then carry on)."""

from __future__ import annotations

import shlex

from . import executor, lock
from .backup import ID_RE, BackupError, _with_secret
from .errors import UsageError
from .executor import Session
from .failover import effective, read_state
from .inventory import Environment
from .render import APP_ROOT, PORTS
from .secrets import Secrets


def pgbouncer_cmd(address: str, command: str) -> str:
    return f"""set -euo pipefail
IFS= read -r PGPASSWORD; export PGPASSWORD
psql -X -q -h {address} -p {PORTS['pgbouncer']} -U pgbouncer_admin -d pgbouncer -c {shlex.quote(command)}
"""


def wait_usable_script(address: str) -> str:
    """Until the app's role gets a query through PgBouncer (past its login-retry pause)."""
    return f"""set -uo pipefail
IFS= read -r PGPASSWORD; export PGPASSWORD
for i in $(seq 120); do
  psql -X -Atq -h {address} -p {PORTS['pgbouncer']} -U bmms -d bmms -c 'SELECT 1' >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "the database does not answer through PgBouncer on {address}" >&2
exit 1
"""


def redis_restore_script(rdb: str) -> str:
    """Load an RDB into this host's Redis: started once without AOF on the snapshot, then AOF is
    switched on again (Redis rewrites it from memory) and the normal unit restored."""
    return f"""set -euo pipefail
IFS= read -r REDISCLI_AUTH; export REDISCLI_AUTH
systemctl stop redis-server
install -o redis -g redis -m 640 {rdb} /var/lib/redis/dump.rdb
rm -rf /var/lib/redis/appendonlydir.restore-old
[ -d /var/lib/redis/appendonlydir ] && mv /var/lib/redis/appendonlydir /var/lib/redis/appendonlydir.restore-old
mkdir -p /run/systemd/system/redis-server.service.d
printf '[Service]\\nExecStart=\\nExecStart=/usr/bin/redis-server /etc/redis/redis.conf --supervised systemd --daemonize no --appendonly no\\n' > /run/systemd/system/redis-server.service.d/restore.conf
systemctl daemon-reload
systemctl start redis-server
cli() {{ redis-cli --no-auth-warning -h 127.0.0.1 -p {PORTS['redis']} "$@"; }}
cli CONFIG SET appendonly yes >/dev/null
for i in $(seq 600); do
  [ "$(cli INFO persistence | tr -d '\\r' | sed -n 's/^aof_rewrite_in_progress://p')" = 0 ] && \\
  [ "$(cli INFO persistence | tr -d '\\r' | sed -n 's/^aof_enabled://p')" = 1 ] && break
  sleep 0.5
done
rm -f /run/systemd/system/redis-server.service.d/restore.conf
systemctl daemon-reload
rm -rf /var/lib/redis/appendonlydir.restore-old
echo "keys: $(cli DBSIZE)"
"""


def restore(env: Environment, secrets: Secrets, backup_id: str, with_redis: bool = False,
            with_media: bool = False, yes: bool = False, log=print) -> list[str]:
    if not ID_RE.match(backup_id or ""):
        raise UsageError(f"--backup takes a backup id like 20261204T021500Z, got {backup_id!r}")
    if env.name != "lab" and not yes:
        raise UsageError(f"restore replaces the database of {env.name}: add --yes to go ahead")
    targets = {t.name: t for t in executor.targets(env)}
    base = env.vars["backup_dir"]
    d = f"{base}/{backup_id}"
    bk = env.with_role("backup")[0]
    done = []
    with lock.locked(env, "restore", backup_id), Session(targets[bk.name]) as b:
        out = b.run(f"test -d {d} && cd {d} && sha256sum -c --quiet MANIFEST.sha256 && echo OK",
                    "check manifest", check=False)
        if "OK" not in out:
            raise BackupError(f"backup {backup_id} on {bk.name}: missing, or its files do not "
                              f"match MANIFEST.sha256; nothing was restored\n{out[-500:]}")
        primary, _ = effective(env, read_state(env))
        bouncers = env.with_role("pgbouncer")
        for pb in bouncers:
            with Session(targets[pb.name]) as s:
                s.run("bash -s", "pause pgbouncer", stdin=_with_secret(
                    pgbouncer_cmd(pb.address, "PAUSE bmms"), secrets["pgbouncer_admin_password"]))
        try:
            with Session(targets[primary]) as p:
                p.run("runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -f -", "recreate database",
                      stdin=b"DROP DATABASE IF EXISTS bmms WITH (FORCE);\nCREATE DATABASE bmms OWNER bmms;\n")
                executor.pipe(b, f"cat {d}/db.dump", p,
                              "runuser -u postgres -- pg_restore -d bmms --no-owner --role=bmms "
                              "--exit-on-error", "restore database")
            done.append(f"database restored on {primary}")
        finally:
            for pb in bouncers:
                with Session(targets[pb.name]) as s:
                    s.run("bash -s", "resume pgbouncer", stdin=_with_secret(
                        pgbouncer_cmd(pb.address, "RESUME bmms"), secrets["pgbouncer_admin_password"]))
                    s.run("bash -s", "database usable", stdin=_with_secret(
                        wait_usable_script(pb.address), secrets["db_app_password"]))
        if with_media:
            for h in env.with_role("web"):
                with Session(targets[h.name]) as w:
                    tmp = f"{APP_ROOT}/shared/media.restore"
                    executor.pipe(b, f"cat {d}/media-{h.name}.tar.gz", w,
                                  f"bash -c {shlex.quote(f'rm -rf {tmp} && mkdir {tmp} && tar -C {tmp} -xzf - && rm -rf {APP_ROOT}/shared/media && mv {tmp}/media {APP_ROOT}/shared/media && rmdir {tmp}')}",
                                  f"restore media of {h.name}")
                done.append(f"media restored on {h.name}")
        if with_redis:
            done.append(_restore_redis(env, secrets, targets, b, d))
    for line in done:
        log(f"restore: {line}")
    return done


def _restore_redis(env, secrets, targets, b: Session, d: str) -> str:
    """On the current master (asked of a Sentinel), with the Sentinels stopped meanwhile so the
    short stop of the master starts no failover."""
    sentinels = env.with_role("sentinel")
    master_addr = None
    for sh in sentinels:
        with Session(targets[sh.name]) as s:
            out = s.run(f"redis-cli --no-auth-warning -h {sh.address} -p {PORTS['sentinel']}",
                        "ask sentinel", check=False, stdin=(
                            f"AUTH {secrets['sentinel_password']}\n"
                            "SENTINEL get-master-addr-by-name bmms\n").encode())
        words = [w for w in out.split() if w != "OK"]
        if words:
            master_addr = words[0]
            break
    master = next((h for h in env.hosts if h.address == master_addr), None) or \
        env.one("redis_master")
    stopped = []
    try:
        for sh in sentinels:
            with Session(targets[sh.name]) as s:
                s.run("systemctl stop redis-sentinel", "pause sentinel")
                stopped.append(sh)
        with Session(targets[master.name]) as m:
            executor.pipe(b, f"cat {d}/redis.rdb", m, "cat > /var/lib/redis/restore.rdb",
                          "copy snapshot")
            out = m.run("bash -s", "restore redis", timeout=900, stdin=_with_secret(
                redis_restore_script("/var/lib/redis/restore.rdb"), secrets["redis_password"]))
            m.run("rm -f /var/lib/redis/restore.rdb", "cleanup")
    finally:
        for sh in stopped:
            with Session(targets[sh.name]) as s:
                s.run("systemctl start redis-sentinel", "resume sentinel")
    return f"redis restored on {master.name} ({out.strip()})"
