"""Database failover: promote a replica, repoint PgBouncer and the other replicas, fence the old
primary so it cannot come back as a second primary; rejoin it later as a replica.

Which host is the primary after a failover is kept in the environment's state file on its lock
host (`/var/lib/bmms-fab/state.json`), read by every deploy and configure run, so the inventory
does not have to be edited during an incident.
"""

from __future__ import annotations

import json
import time

from . import database, engine, executor, lock, render
from .errors import BmmsError, StepError
from .executor import HostResult, Printer, Session
from .inventory import Environment
from .roles.postgres import UNIT
from .secrets import Secrets

STATE_FILE = "/var/lib/bmms-fab/state.json"


class FailoverError(BmmsError):
    """A promote or rejoin could not be done; says which host and why."""


def read_state(env: Environment) -> dict:
    with Session(lock.lock_target(env)) as s:
        out = s.run(f"cat {STATE_FILE} 2>/dev/null || echo '{{}}'", "read state")
    try:
        return json.loads(out)
    except ValueError:
        return {}


def write_state(env: Environment, state: dict) -> None:
    with Session(lock.lock_target(env)) as s:
        s.run(f"install -d -m 700 /var/lib/bmms-fab && cat > {STATE_FILE}.tmp && "
              f"mv {STATE_FILE}.tmp {STATE_FILE}", "write state",
              stdin=json.dumps(state, indent=2, sort_keys=True).encode())


def db_hosts(env: Environment) -> list[str]:
    return [h.name for h in env.hosts if h.has("db_primary") or h.has("db_replica")]


def effective(env: Environment, state: dict) -> tuple[str, list[str]]:
    """(primary, fenced hosts) after any failover recorded in the state."""
    primary = state.get("db_primary") or env.one("db_primary").name
    return primary, [f for f in state.get("fenced", []) if f != primary]


def _pg(session: Session, sql: str, step: str, check: bool = True) -> str:
    return session.run("runuser -u postgres -- psql -X -Atq -f -", step, stdin=sql.encode(),
                       check=check).strip()


def ensure_slots(target: executor.Target, secrets: Secrets, replica_names: list[str]) -> None:
    """Roles, database and a replication slot per named replica, on the primary `target`."""
    with Session(target) as s:
        database.apply_primary(s, secrets, replica_names)


def reconverge(env: Environment, secrets: Secrets, targets: dict, primary: str,
               fenced: list[str], names: list[str], printer: Printer) -> dict[str, HostResult]:
    plans = {n: render.render_host(env, env.host(n), secrets, db_primary=primary,
                                   db_fenced=tuple(fenced)) for n in names}
    results = engine.converge([targets[n] for n in names], plans, mask=secrets.mask,
                              printer=printer)
    failed = [r.error for r in results.values() if r.error]
    if failed:
        raise FailoverError("repointing failed:\n" + "\n".join(f"  {e}" for e in failed))
    return results


def promote(env: Environment, secrets: Secrets, to: str | None = None,
            printer: Printer | None = None, log=print) -> dict:
    printer = printer or Printer()
    if to is not None and to not in db_hosts(env):      # bad input: before any connection
        raise FailoverError(f"--to {to}: not a database host of {env.name} "
                            f"({', '.join(db_hosts(env))})")
    targets = {t.name: t for t in executor.targets(env)}
    state = read_state(env)
    old, fenced = effective(env, state)
    candidates = [n for n in db_hosts(env) if n != old and n not in fenced]
    if to is not None:
        if to == old:
            raise FailoverError(f"--to {to}: it is the primary already")
        candidates = [to]
    new = None
    for name in candidates:
        try:
            with Session(targets[name]) as s:
                if _pg(s, "SELECT pg_is_in_recovery();", "replica state", check=False) == "t":
                    new = name
                    break
        except BmmsError:
            continue
    if new is None:
        raise FailoverError(f"no reachable replica to promote among {', '.join(candidates)}")
    with lock.locked(env, "db.promote", None):
        fence_note = fence(env, targets[old])
        log(f"db.promote: {old} fenced ({fence_note}); promoting {new}")
        t0 = time.monotonic()
        with Session(targets[new]) as s:
            if _pg(s, "SELECT pg_promote(true, 60);", "promote") != "t":
                raise StepError(new, "promote", "pg_promote() did not complete in 60 s")
        ensure_slots(targets[new], secrets,
                     [n for n in db_hosts(env) if n not in (new, old) and n not in fenced])
        promoted_at = time.monotonic()
        state.update({"db_primary": new, "fenced": sorted(set(fenced + [old]) - {new})})
        write_state(env, state)
        names = [n for n in db_hosts(env) if n not in state["fenced"]] + \
                [h.name for h in env.with_role("pgbouncer")]
        reconverge(env, secrets, targets, new, state["fenced"], list(dict.fromkeys(names)),
                   printer)
        log(f"db.promote: {new} is the primary; PgBouncer and replicas repointed in "
            f"{time.monotonic() - t0:.1f}s")
    return {"old": old, "new": new, "fence": fence_note, "promoted_at": promoted_at}


def fence(env: Environment, target: executor.Target) -> str:
    """Stop the old primary and mask its unit, so no reboot brings it back as a primary.
    If it cannot be reached, PgBouncer no longer points at it; `db.rejoin` must be run when it
    is back (its unit is masked then)."""
    try:
        with Session(target) as s:
            s.run(f"systemctl stop {UNIT}; systemctl mask --quiet {UNIT}", "fence", timeout=120)
        return "stopped and masked"
    except BmmsError as exc:
        return f"unreachable ({str(exc).splitlines()[0]}): fence it before it comes back"


def rejoin(env: Environment, secrets: Secrets, host: str | None = None,
           printer: Printer | None = None, log=print) -> str:
    printer = printer or Printer()
    targets = {t.name: t for t in executor.targets(env)}
    state = read_state(env)
    primary, fenced = effective(env, state)
    host = host or (fenced[0] if fenced else None)
    if host is None:
        raise FailoverError("no fenced database host to rejoin (give --host)")
    if host == primary:
        raise FailoverError(f"{host} is the primary; it cannot rejoin as a replica")
    with lock.locked(env, "db.rejoin", None):
        ensure_slots(targets[primary], secrets, [n for n in db_hosts(env) if n != primary])
        with Session(targets[host]) as s:
            s.run(f"systemctl unmask --quiet {UNIT}", "unmask")
        state["fenced"] = [f for f in fenced if f != host]
        write_state(env, state)
        reconverge(env, secrets, targets, primary, state["fenced"], [host], printer)
        with Session(targets[host]) as s:
            s.run("bash -s", "clone from the primary", timeout=3600,
                  stdin=database.replica_script(env.host(primary).address, host).encode())
        names = [h.name for h in env.with_role("pgbouncer")]
        reconverge(env, secrets, targets, primary, state["fenced"], names, printer)
    log(f"db.rejoin: {host} is a streaming replica of {primary}")
    return host
