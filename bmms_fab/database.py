"""PostgreSQL: roles, database, replication slots on the primary; replicas cloned with
pg_basebackup. Pure builders: SQL and scripts. Passwords reach PostgreSQL only as SCRAM verifiers
(never in plain text, never in argv: scripts are sent on stdin)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shlex

from .render import PG_CONF_DIR, PG_DATA_DIR, PG_VERSION, PORTS
from .roles.postgres import UNIT, slot_name
from .secrets import Secrets

ITERATIONS = 4096

# role -> (secret, attributes, grants)
ROLES = {
    "bmms": ("db_app_password", "LOGIN", []),
    "replicator": ("db_replication_password", "LOGIN REPLICATION", []),
    "bmms_monitor": ("db_monitor_password", "LOGIN", ["pg_monitor"]),
    "bmms_backup": ("db_backup_password", "LOGIN", ["pg_read_all_data"]),
}


def scram_verifier(password: str, role: str, pepper: str) -> str:
    """A SCRAM-SHA-256 verifier with a salt derived from (pepper, role): the same password gives
    the same verifier, so an unchanged password is seen as unchanged."""
    salt = hmac.new(pepper.encode(), f"bmms-salt:{role}".encode(), hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def primary_sql(secrets: Secrets, replica_names: list[str]) -> str:
    """Idempotent SQL for the primary; emits NOTICE 'CHANGED: ...' for each change it makes."""
    pepper = secrets["django_secret_key"]
    out = ["\\set ON_ERROR_STOP on", "SET client_min_messages = notice;", "DO $bmms$", "BEGIN"]
    for role, (secret, attrs, grants) in ROLES.items():
        verifier = scram_verifier(secrets[secret], role, pepper)
        out += [
            f"  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_lit(role)}) THEN",
            f"    CREATE ROLE {role} {attrs} PASSWORD {_lit(verifier)};",
            f"    RAISE NOTICE 'CHANGED: role {role} created';",
            f"  ELSIF (SELECT rolpassword IS DISTINCT FROM {_lit(verifier)} FROM pg_authid "
            f"WHERE rolname = {_lit(role)}) THEN",
            f"    ALTER ROLE {role} {attrs} PASSWORD {_lit(verifier)};",
            f"    RAISE NOTICE 'CHANGED: role {role} password';",
            "  END IF;",
        ]
        for g in grants:
            out += [
                f"  IF NOT pg_has_role({_lit(role)}, {_lit(g)}, 'MEMBER') THEN",
                f"    GRANT {g} TO {role};",
                f"    RAISE NOTICE 'CHANGED: grant {g} to {role}';",
                "  END IF;",
            ]
    for name in replica_names:
        slot = slot_name(name)
        out += [
            f"  IF NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {_lit(slot)}) THEN",
            f"    PERFORM pg_create_physical_replication_slot({_lit(slot)});",
            f"    RAISE NOTICE 'CHANGED: replication slot {slot}';",
            "  END IF;",
        ]
    out += ["END", "$bmms$;",
            "SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'bmms') AS need_db \\gset",
            "\\if :need_db",
            # owned by the app role: PostgreSQL 15's public schema is writable only by its owner
            "  CREATE DATABASE bmms OWNER bmms;",
            "  \\echo CHANGED: database bmms",
            "\\endif"]
    return "\n".join(out) + "\n"


def primary_script() -> str:
    """Run primary_sql (on stdin) as the postgres superuser; NOTICEs become CHANGED lines."""
    return ("set -euo pipefail\n"
            f"systemctl is-active --quiet {UNIT} || systemctl start {UNIT}\n"
            "out=$(runuser -u postgres -- psql -X -q -d postgres 2>&1) || "
            "{ printf '%s\\n' \"$out\" >&2; exit 1; }\n"
            "printf '%s\\n' \"$out\" | sed -n -e 's/^.*NOTICE:  //' -e '/^CHANGED/p'\n")


def apply_primary(session, secrets: Secrets, replica_names: list[str]) -> list[str]:
    """Roles, the database and a slot per replica on the primary; returns what changed."""
    out = session.run(f"bash -c {shlex.quote(primary_script())}", "database roles and slots",
                      stdin=primary_sql(secrets, replica_names).encode())
    return [l[len("CHANGED: "):] for l in out.splitlines() if l.startswith("CHANGED: ")]


def replica_script(primary_address: str, host_name: str) -> str:
    """Clone from the primary unless this host is already a standby of it."""
    slot = slot_name(host_name)
    return f"""set -eu
DATA={PG_DATA_DIR}
if [ -f $DATA/standby.signal ] && runuser -u postgres -- psql -X -Atqc "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null | grep -q streaming; then
  exit 0
fi
systemctl stop {UNIT}
rm -rf $DATA.clone
install -d -o postgres -g postgres -m 700 $DATA.clone
runuser -u postgres -- pg_basebackup -h {primary_address} -p {PORTS['postgres']} -U replicator \\
  -D $DATA.clone -X stream -S {slot} -w --checkpoint=fast
touch $DATA.clone/standby.signal
chown postgres:postgres $DATA.clone/standby.signal
rm -rf $DATA.old
[ -d $DATA ] && mv $DATA $DATA.old
mv $DATA.clone $DATA
systemctl start {UNIT}
rm -rf $DATA.old
for i in $(seq 60); do
  s=$(runuser -u postgres -- psql -X -Atqc "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || true)
  [ "$s" = streaming ] && break
  sleep 1
done
[ "$s" = streaming ] || {{ echo "replica not streaming from {primary_address}" >&2; exit 1; }}
echo 'CHANGED: cloned from {primary_address} and streaming (slot {slot})'
"""


__all__ = ["primary_sql", "primary_script", "replica_script", "scram_verifier", "PG_CONF_DIR",
           "PG_VERSION"]
