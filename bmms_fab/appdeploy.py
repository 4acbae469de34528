"""The app on its hosts: ship a release's wheels, install it offline, check, migrate, switch.

Script builders are pure; the functions taking a Session run them (one round trip each)."""

from __future__ import annotations

import json
import shlex

from .errors import StepError
from .executor import Session
from .release import Release
from .render import APP_ROOT

RELEASES = f"{APP_ROOT}/releases"
WHEELS = f"{APP_ROOT}/wheels"
UPLOAD_DIR = "/var/tmp/bmms-upload"
LIVE_FILE = f"{APP_ROOT}/live-color"
LIVE_CONFIG_FILE = f"{APP_ROOT}/live-config"
# what a running gunicorn read at start: a change means the node must be rolled
CONFIG_FILES = ("/etc/bmms/app.env", "/etc/bmms/gunicorn.conf.py",
                "/etc/systemd/system/bmms-gunicorn@.service")

FACTS_SCRIPT = f"""
import hashlib, json, os, subprocess
def config_hash():
    h = hashlib.sha256()
    for p in {CONFIG_FILES!r}:
        try: h.update(open(p, "rb").read())
        except OSError: h.update(b"-")
    return h.hexdigest()
def read(p):
    try: return open(p).read().strip()
    except OSError: return None
def link(p):
    try: return os.path.basename(os.readlink(p))
    except OSError: return None
def state(u):
    return subprocess.run(["systemctl", "is-active", u], capture_output=True, text=True).stdout.strip()
rel = "{RELEASES}"
out = {{
  # wheels are stored by content: wheels/<sha256>/<file name>
  "wheels": sorted(d + "/" + f for d in (os.listdir("{WHEELS}") if os.path.isdir("{WHEELS}") else [])
                   if os.path.isdir(os.path.join("{WHEELS}", d))
                   for f in os.listdir(os.path.join("{WHEELS}", d)) if f.endswith(".whl")),
  "releases": sorted((r for r in (os.listdir(rel) if os.path.isdir(rel) else [])
                      if os.path.exists(os.path.join(rel, r, ".complete"))),
                     key=lambda r: os.stat(os.path.join(rel, r, ".complete")).st_mtime),
  "current": link("{APP_ROOT}/current"),
  "slots": {{c: link("{APP_ROOT}/slots/" + c) for c in ("blue", "green")}},
  "live": read("{LIVE_FILE}"),
  "live_config": read("{LIVE_CONFIG_FILE}"),
  "config": config_hash(),
  "units": {{c: state("bmms-gunicorn@" + c) for c in ("blue", "green")}},
}}
print(json.dumps(out))
"""


def facts(session: Session) -> dict:
    """What the host has: wheels, complete releases, current, slots, live colour, unit states."""
    return json.loads(session.run("python3 -", "app facts", stdin=FACTS_SCRIPT.encode()))


def run_as_app(release_dir: str, argv: str, user: bool = True) -> str:
    """A command in the app's environment exactly as the units get it (systemd parses the
    env file), in the release directory."""
    props = ["-p", "EnvironmentFile=/etc/bmms/app.env", "-p", f"WorkingDirectory={release_dir}",
             "-E", f"STATIC_ROOT={release_dir}/static"]
    if user:
        props += ["-p", "User=bmms", "-p", "Group=bmms"]
    return ("systemd-run --quiet --wait --pipe --collect " + " ".join(props) + " " + argv)


def wheel_path(name: str, sha256: str) -> str:
    """Where a wheel lives on a host: by content, since a file name (an app's version that
    did not change) can stand for different content."""
    return f"{WHEELS}/{sha256}/{name}"


def ship_wheels(session: Session, release: Release, have: list[str]) -> tuple[list[str], int]:
    """Upload the wheels (by content) the host lacks; returns (names sent, bytes sent)."""
    held = set(have)
    missing = [n for n, sha in release.wheels.items() if f"{sha}/{n}" not in held]
    if not missing:
        return [], 0
    session.run(f"install -d -m 1777 {UPLOAD_DIR}", "prepare upload")
    sent = 0
    for name in missing:
        path = release.wheelhouse / name
        session.put(path, f"{UPLOAD_DIR}/{release.wheels[name]}.part")
        sent += path.stat().st_size
    moves = " && ".join(
        f"install -D -m 644 -o root -g root {UPLOAD_DIR}/{release.wheels[n]}.part "
        f"{shlex.quote(wheel_path(n, release.wheels[n]))} && rm -f {UPLOAD_DIR}/{release.wheels[n]}.part"
        f" && echo '{release.wheels[n]}  {wheel_path(n, release.wheels[n])}' | sha256sum -c --quiet"
        for n in missing)
    session.run(f"bash -c {shlex.quote('set -e; ' + moves)}", "install wheels")
    return missing, sent


def install_script(release: Release) -> str:
    r = f"{RELEASES}/{release.id}"
    wheels = " ".join(shlex.quote(wheel_path(n, sha)) for n, sha in release.wheels.items())
    return f"""set -euo pipefail
R={r}
[ -f $R/.complete ] && exit 0
rm -rf $R
install -d -m 755 $R
python3 -m venv $R/venv
$R/venv/bin/pip install --quiet --no-index --no-deps --disable-pip-version-check {wheels}
$R/venv/bin/pip check --disable-pip-version-check >/dev/null || {{ $R/venv/bin/pip check >&2; exit 1; }}
echo {release.id} > $R/RELEASE
printf '%s\n' {" ".join(shlex.quote(f"{sha}/{n}") for n, sha in release.wheels.items())} > $R/WHEELS
{run_as_app(r, "$R/venv/bin/django-admin collectstatic --noinput --verbosity 0", user=False)}
{run_as_app(r, "$R/venv/bin/django-admin check --deploy --fail-level WARNING")}
touch $R/.complete
echo 'CHANGED: release {release.id} installed'
"""


def install(session: Session, release: Release) -> list[str]:
    out = session.run("bash -s", f"install release {release.id}",
                      stdin=install_script(release).encode(), timeout=1800)
    return [l[9:] for l in out.splitlines() if l.startswith("CHANGED: ")]


def migrate(session: Session, release: Release) -> list[str]:
    r = f"{RELEASES}/{release.id}"
    out = session.run(run_as_app(r, f"{r}/venv/bin/django-admin migrate --noinput"),
                      f"migrate {release.id}", timeout=3600)
    applied = [l.strip() for l in out.splitlines() if l.strip().startswith("Applying ")]
    return [f"migrations: {', '.join(a[9:].rstrip('. OK') for a in applied)}"] if applied else []


def static_archive(session: Session, release: Release) -> bytes:
    code, out, err = session.exec(f"tar -C {RELEASES}/{release.id}/static -czf - .")
    if code != 0:
        raise StepError(session.target.name, "static archive", "tar failed", code, err.decode())
    return out


def publish_static(lb: Session, release: Release, archive: bytes) -> list[str]:
    """Merge the release's static files into the LB's tree (old releases' files stay, so pages
    of either release find theirs during a rolling restart)."""
    marker = f"{APP_ROOT}/shared/static/.releases/{release.id}"
    script = (f"set -eu; [ -f {marker} ] && {{ cat >/dev/null; exit 0; }}; "
              f"tar -C {APP_ROOT}/shared/static -xzf - && install -d {APP_ROOT}/shared/static/.releases"
              f" && touch {marker} && echo 'CHANGED: static files of {release.id}'")
    out = lb.run(f"bash -c {shlex.quote(script)}", "publish static", stdin=archive)
    return [l[9:] for l in out.splitlines() if l.startswith("CHANGED: ")]


def switch_script(release, keep: int, restart_units: list[str]) -> str:
    """Point `current` at the release (atomically), restart workers/beat (warm), prune."""
    restarts = "\n".join(f"  systemctl restart {u}" for u in restart_units) or "  true"
    return f"""set -euo pipefail
cd {APP_ROOT}
if [ "$(readlink current 2>/dev/null)" != "releases/{release.id}" ]; then
  ln -sfn releases/{release.id} current.tmp && mv -T current.tmp current
  echo 'CHANGED: current -> {release.id}'
{restarts}
fi
# keep the newest {keep} complete releases, and any a colour or current still points to
used="$(readlink current slots/blue slots/green 2>/dev/null | xargs -n1 basename 2>/dev/null || true)"
ls -1t releases | tail -n +{keep + 1} | while read -r r; do
  echo "$used" | grep -qx "$r" || {{ rm -rf "releases/$r"; echo "CHANGED: pruned release $r"; }}
done
# wheels no kept release installs from
if ls releases/*/WHEELS >/dev/null 2>&1; then
  cat releases/*/WHEELS | sort -u > /var/lib/bmms-fab/wheels.keep
  ( cd wheels && find . -name '*.whl' -printf '%P\\n' ) | sort | comm -23 - /var/lib/bmms-fab/wheels.keep |
  while read -r w; do rm -f "wheels/$w"; rmdir "wheels/$(dirname "$w")" 2>/dev/null || true; echo "CHANGED: pruned wheel $w"; done
fi
"""


def switch(session: Session, release, keep: int, restart_units: list[str]) -> list[str]:
    """`release`: a Release or anything with an `id` (a release already on the host)."""
    out = session.run("bash -s", f"switch to {release.id}",
                      stdin=switch_script(release, keep, restart_units).encode(), timeout=900)
    return [l[9:] for l in out.splitlines() if l.startswith("CHANGED: ")]
