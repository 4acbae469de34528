"""`inv backup` as a cron job: no overlap (a lock file), one summary line, a log file, exit code
non-zero on any failure; and the crontab line that runs it."""

from __future__ import annotations

import fcntl
import os
import shlex
from datetime import datetime, timezone
from pathlib import Path

from . import PROJECT_ROOT, backup, executor, failover, lock
from . import secrets as secrets_mod
from .errors import BmmsError
from .executor import Session
from .inventory import Environment


class BackupRunning(BmmsError):
    """Another backup of the same environment is running on this machine."""


def state_dir() -> Path:
    d = lock.LOCAL_AUDIT_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_path(env: Environment) -> Path:
    return state_dir() / f"backup-{env.name}.log"


def run_once(env: Environment, verify: bool = False) -> str:
    lock_file = state_dir() / f"backup-{env.name}.lock"
    fh = open(lock_file, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        raise BackupRunning(f"a backup of {env.name} is already running ({holder}); "
                            f"this run does nothing") from None
    fh.truncate(0)
    fh.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    fh.flush()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        secrets = secrets_mod.load(env)
        targets = {t.name: t for t in executor.targets(env)}
        primary, _ = failover.effective(env, failover.read_state(env))
        result = backup.run(env, secrets, targets, primary, verify)
        line = result.line()
        with open(log_path(env), "a") as log:
            log.write(f"{stamp} ok {line}\n")
        return line
    except BmmsError as exc:
        with open(log_path(env), "a") as log:
            log.write(f"{stamp} FAILED {exc}\n")
        raise
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def cron_line(env: Environment) -> str:
    cmd = (f"cd {shlex.quote(str(PROJECT_ROOT))} && ./bmms-fab backup --hosts {env.name} "
           f"--verify --quiet")
    return f"{env.vars['backup_schedule']} root {cmd}"


def install_cron(env: Environment, line: str, directory: Path = Path("/etc/cron.d")) -> Path:
    path = directory / f"bmms-fab-backup-{env.name}"
    path.write_text("# Managed by bmms-fab: nightly verified backup. Output only on failure.\n"
                    "SHELL=/bin/bash\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
                    f"{line}\n")
    path.chmod(0o644)
    return path


def listing(env: Environment) -> list[str]:
    bk = env.with_role("backup")[0]
    base = env.vars["backup_dir"]
    target = next(t for t in executor.targets(env) if t.name == bk.name)
    with Session(target) as s:
        out = s.run(f"cd {base} 2>/dev/null && for d in $(ls -1 | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$'); "
                    f"do echo \"$d $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"status\"])' "
                    f"$d/backup.json 2>/dev/null || echo ?) $(du -sh $d | cut -f1)\"; done", "list")
    return [l for l in out.splitlines() if l.strip()] or ["(no backups)"]
