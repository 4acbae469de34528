"""The deploy lock of an environment, and the audit log.

The lock is a directory created atomically (`mkdir`) on one host of the environment (its first
load balancer), holding who took it, when, for what task and release, and from where. A second
deploy or rolling restart is refused with that information. A lock left by a killed run is
released explicitly (`inv lock.release`). Read-only tasks take no lock.

Every locking task appends one JSON line to the audit log on that host
(/var/log/bmms-fab/audit.log) and on this machine: who, when, task, release, result, duration.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shlex
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from .errors import BmmsError
from .executor import Session, Target, targets as env_targets
from .inventory import Environment

LOCK_DIR = "/var/lib/bmms-fab/deploy.lock"
AUDIT_LOG = "/var/log/bmms-fab/audit.log"
LOCAL_AUDIT_DIR = Path(os.environ.get("BMMS_STATE_DIR", "~/.local/state/bmms-fab")).expanduser()


class LockedError(BmmsError):
    """Another operator holds the environment's deploy lock."""

    exit_code = 3

    def __init__(self, env: str, info: dict):
        self.info = info
        super().__init__(
            f"{env} is locked by {info.get('user')}@{info.get('host')} (from "
            f"{info.get('from', '?')}) since {info.get('since')}: {info.get('task')} of release "
            f"{info.get('release') or '-'}. If that run is dead: inv lock.release --hosts {env}")


def lock_target(env: Environment) -> Target:
    hosts = env.with_role("lb") or list(env.hosts)
    return next(t for t in env_targets(env) if t.name == hosts[0].name)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def who() -> dict:
    return {"user": os.environ.get("SUDO_USER") or getpass.getuser(), "host": socket.gethostname(),
            "pid": os.getpid()}


def acquire(session: Session, env: str, task: str, release: str | None) -> dict:
    info = {**who(), "token": uuid.uuid4().hex, "task": task, "release": release, "since": _now()}
    script = (f"install -d -m 700 {LOCK_DIR.rsplit('/', 1)[0]}; "
              f"if mkdir {LOCK_DIR} 2>/dev/null; then "
              f"  from=$(echo ${{SSH_CONNECTION:-?}} | cut -d' ' -f1); "
              f"  python3 -c 'import json,sys; d=json.load(sys.stdin); d[\"from\"]=sys.argv[1]; "
              f"print(json.dumps(d))' \"$from\" > {LOCK_DIR}/info.json; echo TAKEN; "
              f"else cat {LOCK_DIR}/info.json 2>/dev/null || echo '{{}}'; fi")
    out = session.run(f"bash -c {shlex.quote(script)}", "take deploy lock", stdin=json.dumps(info).encode())
    if out.startswith("TAKEN"):
        return info
    try:
        holder = json.loads(out)
    except ValueError:
        holder = {"user": "?", "task": "?"}
    raise LockedError(env, holder)


def status(session: Session) -> dict | None:
    out = session.run(f"cat {LOCK_DIR}/info.json 2>/dev/null || true", "lock status").strip()
    return json.loads(out) if out else None


def release(session: Session, token: str | None = None) -> bool:
    """Remove the lock: ours (token given), or whoever's (explicit release of a stale lock)."""
    check = (f"grep -q '\"token\": \"{token}\"' {LOCK_DIR}/info.json && " if token else "")
    out = session.run(f"bash -c {shlex.quote(f'[ -d {LOCK_DIR} ] && {check}rm -rf {LOCK_DIR} && echo RELEASED || true')}",
                      "release deploy lock")
    return "RELEASED" in out


def audit(session: Session | None, env: str, entry: dict) -> None:
    line = json.dumps({"env": env, **entry}, sort_keys=True)
    LOCAL_AUDIT_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCAL_AUDIT_DIR / f"audit-{env}.log", "a") as fh:
        fh.write(line + "\n")
    if session is not None:
        session.run(f"bash -c {shlex.quote(f'install -d -m 750 /var/log/bmms-fab && cat >> {AUDIT_LOG}')}",
                    "audit log", stdin=(line + "\n").encode())


def describe(info: dict) -> str:
    return (f"{info.get('user')}@{info.get('host')} from {info.get('from', '?')} since "
            f"{info.get('since')}: {info.get('task')} of {info.get('release') or '-'}")


def release_stale(env: Environment, confirm) -> str:
    """Release whoever's lock after `confirm(description)` says yes; audited."""
    with Session(lock_target(env)) as s:
        info = status(s)
        if not info:
            return f"{env.name}: not locked"
        if not confirm(describe(info)):
            return f"{env.name}: lock kept"
        release(s)
        audit(s, env.name, {"who": "{user}@{host}".format(**who()), "when": _now(),
                            "task": "lock.release", "release": info.get("release"),
                            "result": f"released lock of {info.get('user')}@{info.get('host')}",
                            "duration_s": 0})
    return f"{env.name}: lock released"


@contextlib.contextmanager
def locked(env: Environment, task: str, release_id: str | None = None):
    """Hold the environment's lock around a task; audit its result and duration."""
    target = lock_target(env)
    session = Session(target).open()
    start = time.monotonic()
    info = acquire(session, env.name, task, release_id)
    result = "ok"
    state = {"release": release_id}
    try:
        yield state
    except BaseException as exc:
        result = f"failed: {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}"
        raise
    finally:
        entry = {"who": f"{info['user']}@{info['host']}", "when": info["since"], "task": task,
                 "release": state.get("release"), "result": result,
                 "duration_s": round(time.monotonic() - start, 1)}
        try:
            audit(session, env.name, entry)
        finally:
            release(session, info["token"])
            session.close()
