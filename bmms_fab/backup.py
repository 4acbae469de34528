"""Backups: a PostgreSQL dump (custom format) from a healthy replica (the primary when none is),
roles/globals, a Redis RDB snapshot and the app hosts' media, stored on the `backup` host under
`backup_dir/<UTC time>/` with a SHA-256 manifest; `--verify` restores the dump into a scratch
cluster on the backup host and counts every table's rows before the backup is marked good.

Pure builders here (scripts, retention); `run()` drives them over SSH. Passwords go on stdin.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import executor
from .errors import BmmsError
from .executor import Session
from .inventory import Environment
from .render import APP_ROOT, PORTS, PG_VERSION
from .secrets import Secrets

ID_RE = re.compile(r"^\d{8}T\d{6}Z$")
PG_BIN = f"/usr/lib/postgresql/{PG_VERSION}/bin"


class BackupError(BmmsError):
    """A backup (or its verification) failed; the partial backup was removed."""


def new_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def parse_id(backup_id: str) -> datetime:
    return datetime.strptime(backup_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def expired(ids: list[str], now: datetime, days: int, min_keep: int) -> list[str]:
    """Backups older than `days`, never leaving fewer than `min_keep` (the newest are kept)."""
    valid = sorted((i for i in ids if ID_RE.match(i)), reverse=True)
    keep = set(valid[:min_keep])
    limit = now - timedelta(days=days)
    return sorted(i for i in valid if i not in keep and parse_id(i) < limit)


def dump_script(d: str, db_host: str) -> str:
    """On the backup host: dump the database and the roles (without passwords) from `db_host`.
    The password of bmms_backup is the first line of stdin."""
    return f"""set -euo pipefail
IFS= read -r PGPASSWORD; export PGPASSWORD
export PGCONNECT_TIMEOUT=10
pg_dump -h {db_host} -p {PORTS['postgres']} -U bmms_backup -d bmms -Fc -f {d}/db.dump
pg_dumpall -h {db_host} -p {PORTS['postgres']} -U bmms_backup --globals-only --no-role-passwords > {d}/globals.sql
"""


def redis_script(d: str, replicas: list[str], others: list[str]) -> str:
    """On the backup host: an RDB snapshot fetched over the replication protocol, from a replica
    whose link to its master is up, else from whichever node is the master now."""
    return f"""set -euo pipefail
IFS= read -r REDISCLI_AUTH; export REDISCLI_AUTH
info() {{ redis-cli --no-auth-warning -h "$1" -p {PORTS['redis']} INFO replication 2>/dev/null | tr -d '\r'; }}
src=''
for h in {' '.join(replicas)}; do
  info $h | grep -q '^master_link_status:up' && {{ src=$h; break; }}
done
if [ -z "$src" ]; then
  for h in {' '.join(replicas + others)}; do
    info $h | grep -q '^role:master' && {{ src=$h; break; }}
  done
fi
[ -n "$src" ] || {{ echo "no Redis node to take a snapshot from" >&2; exit 1; }}
redis-cli --no-auth-warning -h $src -p {PORTS['redis']} --rdb {d}/redis.rdb >/dev/null
echo "redis snapshot from $src"
"""


def verify_script(d: str) -> str:
    """Restore db.dump into a scratch cluster on the backup host; print `table rows` lines for
    every table, checked against the dump's table of contents."""
    return f"""set -euo pipefail
cd /
T=$(mktemp -d /var/tmp/bmms-verify.XXXXXX)
chown postgres: $T
cleanup() {{ runuser -u postgres -- {PG_BIN}/pg_ctl -D $T/data -m immediate stop >/dev/null 2>&1 || true; rm -rf $T; }}
trap cleanup EXIT
runuser -u postgres -- {PG_BIN}/initdb -D $T/data -A peer >/dev/null
runuser -u postgres -- {PG_BIN}/pg_ctl -D $T/data -o "-c listen_addresses='' -k $T" -l $T/log -w start >/dev/null
runuser -u postgres -- createdb -h $T scratch
runuser -u postgres -- pg_restore -h $T -d scratch --no-owner --no-acl --exit-on-error < {d}/db.dump
want=$(pg_restore -l {d}/db.dump | awk '$4=="TABLE" && $5=="DATA" {{print $6"."$7}}' | sort)
have=$(runuser -u postgres -- psql -h $T -d scratch -XAtc "SELECT schemaname||'.'||tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1")
missing=$(comm -23 <(echo "$want") <(echo "$have" | sort))
[ -z "$missing" ] || {{ echo "tables missing after restore: $missing" >&2; exit 1; }}
for t in $have; do
  echo "$t $(runuser -u postgres -- psql -h $T -d scratch -XAtc "SELECT count(*) FROM $t")"
done
"""


def finish_script(base: str, partial: str, final: str, meta: dict) -> str:
    return f"""set -euo pipefail
cd {partial}
cat > backup.json <<'BMMS_META'
{json.dumps(meta, indent=2, sort_keys=True)}
BMMS_META
sha256sum $(ls | grep -v '^MANIFEST.sha256$' | sort) > MANIFEST.sha256
chmod -R go-rwx {partial}
mv -T {partial} {final}
"""


@dataclass
class Result:
    id: str
    status: str = "failed"
    db_source: str = ""
    tables: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    pruned: list = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        rows = sum(self.tables.values())
        size = sum(self.files.values())
        return (f"backup {self.id}: {self.status}, db from {self.db_source}, "
                f"{len(self.tables) or '-'} tables/{rows} rows verified, {len(self.files)} files "
                f"{size / 1e6:.1f} MB, pruned {len(self.pruned)}, {self.seconds:.1f}s")


def healthy_replica(env: Environment, targets: dict, primary: str) -> str:
    """The first replica that is streaming; the primary when none is."""
    for h in env.hosts:
        if (h.has("db_replica") or h.has("db_primary")) and h.name != primary:
            try:
                with Session(targets[h.name]) as s:
                    out = s.run("runuser -u postgres -- psql -XAtc \"SELECT pg_is_in_recovery(), "
                                "(SELECT status FROM pg_stat_wal_receiver)\"", "replica health",
                                check=False)
                if out.strip() == "t|streaming":
                    return h.name
            except BmmsError:
                continue
    return primary


def run(env: Environment, secrets: Secrets, targets: dict, primary: str, verify: bool,
        now: datetime | None = None) -> Result:
    t0 = time.monotonic()
    bk = env.with_role("backup")
    if not bk:
        raise BackupError(f"{env.name}: no host with role 'backup'")
    base = env.vars["backup_dir"]
    bid = new_id(now)
    result = Result(bid)
    partial, final = f"{base}/.{bid}.partial", f"{base}/{bid}"
    with Session(targets[bk[0].name]) as b:
        b.run(f"install -d -m 700 {base} && rm -rf {partial} && install -d -m 700 {partial}",
              "backup dir")
        try:
            src = healthy_replica(env, targets, primary)
            result.db_source = src
            b.run("bash -s", "database dump", timeout=86400,
                  stdin=_with_secret(dump_script(partial, env.host(src).address),
                                     secrets["db_backup_password"]))
            replicas = [h.address for h in env.with_role("redis_replica")]
            masters = [h.address for h in env.with_role("redis_master")]
            if replicas or masters:
                b.run("bash -s", "redis snapshot", timeout=3600,
                      stdin=_with_secret(redis_script(partial, replicas, masters),
                                         secrets["redis_password"]))
            for h in env.with_role("web"):
                with Session(targets[h.name]) as web:
                    executor.pipe(web, f"tar -C {APP_ROOT}/shared -czf - media", b,
                            f"cat > {partial}/media-{h.name}.tar.gz", f"media of {h.name}")
            if verify:
                out = b.run("bash -s", "verify restore", stdin=verify_script(partial).encode(),
                            timeout=86400)
                result.tables = {l.split()[0]: int(l.split()[1]) for l in out.splitlines()
                                 if len(l.split()) == 2 and l.split()[1].isdigit()}
            result.status = "good" if verify else "unverified"
            meta = {"id": bid, "env": env.name, "status": result.status, "db_source": src,
                    "tables": result.tables, "created": bid}
            b.run("bash -s", "manifest", stdin=finish_script(base, partial, final, meta).encode())
            sizes = b.run(f"cd {final} && stat -c '%n %s' *", "sizes")
            result.files = {l.split()[0]: int(l.split()[1]) for l in sizes.splitlines()}
        except BmmsError as exc:
            b.run(f"rm -rf {partial}", "remove partial backup", check=False)
            raise BackupError(f"backup {bid} failed: {exc}") from None
        result.pruned = prune(b, base, env, now)
    result.seconds = time.monotonic() - t0
    return result


def _with_secret(script: str, secret: str) -> bytes:
    """`bash -s` reads its script from stdin one byte at a time, so the script's `read` on its
    second line takes the line after it: the secret goes there, never into argv or a file."""
    first, _, rest = script.partition("\n")
    second, _, tail = rest.partition("\n")
    return f"{first}\n{second}\n{secret}\n{tail}".encode()


def list_ids(b: Session, base: str) -> list[str]:
    out = b.run(f"ls -1 {base} 2>/dev/null || true", "list backups")
    return [l for l in out.split() if ID_RE.match(l)]


def prune(b: Session, base: str, env: Environment, now: datetime | None = None) -> list[str]:
    gone = expired(list_ids(b, base), now or datetime.now(timezone.utc),
                   env.vars["backup_retention_days"], env.vars["backup_min_keep"])
    if gone:
        b.run("rm -rf " + " ".join(shlex.quote(f"{base}/{i}") for i in gone), "retention")
    return gone
