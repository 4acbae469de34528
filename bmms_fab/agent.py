"""The remote half of a converge. Standard library only: shipped over SSH stdin at each call
and run by the host's python3, so hosts need nothing installed and secrets never touch argv.

Operations (payload JSON in, result JSON out):
  facts  {paths}                 -> {files: {path: {sha256, mode, owner, group} | null}, pending}
  read   {paths}                 -> {contents: {path: base64 | null}}
  apply  {files, handlers}       -> {written, handlers_run, error}

Handlers owed are recorded in STATE before any file is written and removed only after they ran,
so a restart owed by a run that failed is done by the next run.
"""

import base64
import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys
import tempfile

STATE = "/var/lib/bmms-fab/pending-handlers.json"


def _load_pending():
    try:
        with open(STATE) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return []


def _save_pending(handlers):
    os.makedirs(os.path.dirname(STATE), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(STATE), prefix=".pending-")
    with os.fdopen(fd, "w") as fh:
        json.dump(handlers, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, STATE)


MARKER = "Managed by bmms-fab"


def _stat(path, marker=MARKER):
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    digest = hashlib.sha256(data).hexdigest()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"sha256": digest, "mode": st.st_mode & 0o7777, "owner": owner, "group": group,
            "managed": marker.encode() in data[:4096]}


def facts(payload):
    markers = payload.get("markers", {})
    return {"files": {p: _stat(p, markers.get(p, MARKER)) for p in payload["paths"]},
            "pending": _load_pending()}


def read(payload):
    out = {}
    for p in payload["paths"]:
        try:
            with open(p, "rb") as fh:
                out[p] = base64.b64encode(fh.read()).decode()
        except OSError:
            out[p] = None
    return {"contents": out}


def _ids(owner, group):
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def _write(f):
    """Write one file atomically: temp file in the same directory, check, fsync, rename."""
    path = f["path"]
    uid, gid = _ids(f["owner"], f["group"])
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)
    if f.get("meta_only"):
        os.chown(path, uid, gid)
        os.chmod(path, f["mode"])
        return None
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".bmms-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(f["content"]))
            fh.flush()
            os.fsync(fh.fileno())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, f["mode"])
        if f.get("check"):
            cmd = f["check"].replace("{path}", tmp)
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
            if r.returncode != 0:
                return "check `%s` failed (exit %d): %s" % (
                    f["check"], r.returncode, (r.stderr or r.stdout).strip()[-800:])
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    return None


def _handler_cmd(h):
    action, _, unit = h.partition(":")
    if action == "daemon-reload":
        return ["systemctl", "daemon-reload"]
    # reset-failed first: a unit that crash-looped on a packaged default config (Debian starts
    # services at install) may have hit its start limit; the new config is what fixes it
    if action == "restart":
        return ["sh", "-c", 'systemctl reset-failed "$0" 2>/dev/null; systemctl restart "$0"', unit]
    if action == "reload":
        return ["sh", "-c", 'systemctl reset-failed "$0" 2>/dev/null; '
                'systemctl reload-or-restart "$0"', unit]
    if action == "firewall":
        # save the rules in force, arm a timer that restores them, then load the new ones;
        # only a new SSH connection from the control machine cancels the timer
        return ["sh", "-c", FIREWALL_APPLY]
    if action == "try-restart":   # exit 5: no such unit (its package is not installed): fine
        return ["sh", "-c", 'systemctl try-restart "$0"; rc=$?; [ $rc = 5 ] && exit 0; exit $rc',
                unit]
    raise ValueError("unknown handler " + h)


FIREWALL_APPLY = """set -e
saved=/var/lib/bmms-fab/nft.rollback
{ echo 'flush ruleset'; nft list ruleset; } > $saved
systemctl stop bmms-fw-rollback.timer 2>/dev/null || true
systemctl reset-failed bmms-fw-rollback.service bmms-fw-rollback.timer 2>/dev/null || true
systemd-run --quiet --unit=bmms-fw-rollback --on-active=60 --timer-property=AccuracySec=1s \\
    /usr/sbin/nft -f $saved
nft -f /etc/nftables.conf || { systemctl stop bmms-fw-rollback.timer; exit 1; }
"""


def order_handlers(handlers):
    """daemon-reload first; a restart of a unit replaces its reload; each unit once, in order."""
    out, restarts = [], {h.partition(":")[2] for h in handlers if h.startswith("restart:")}
    if any(h.startswith("daemon-reload") for h in handlers):
        out.append("daemon-reload:systemd")
    for h in handlers:
        action, _, unit = h.partition(":")
        if action == "daemon-reload" or (action == "reload" and unit in restarts):
            continue
        if h not in out:
            out.append(h)
    return out


def apply(payload):
    pending = order_handlers(_load_pending() + payload.get("handlers", []))
    _save_pending(pending)
    written, error = [], None
    for f in payload.get("files", []):
        try:
            problem = _write(f)
        except (OSError, KeyError) as exc:
            problem = "%s: %s" % (exc.__class__.__name__, exc)
        if problem:
            error = {"step": "write " + f["path"], "cause": problem}
            break
        written.append(f["path"])
    ran = []
    if error is None:
        for h in list(pending):
            r = subprocess.run(_handler_cmd(h), capture_output=True, text=True)
            if r.returncode != 0:
                tail = subprocess.run(["journalctl", "-n", "15", "--no-pager", "-o", "cat", "-u",
                                       h.partition(":")[2]], capture_output=True, text=True)
                error = {"step": "handler " + h, "cause": (r.stderr.strip() or "failed")
                         + "\n" + tail.stdout.strip()[-1200:], "exit": r.returncode}
                break
            ran.append(h)
            pending.remove(h)
            _save_pending(pending)
    return {"written": written, "handlers_run": ran, "pending": pending, "error": error}


def main(data):
    request = json.loads(data)
    op = {"facts": facts, "read": read, "apply": apply}[request["op"]]
    sys.stdout.write(json.dumps(op(request["payload"])))


if __name__ == "__main__":  # run locally: python3 agent.py < request.json
    main(sys.stdin.read())
