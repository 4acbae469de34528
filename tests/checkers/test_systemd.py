"""systemd-analyze verify on every unit and drop-in the tool writes, in a root made of this
machine's /usr (packaged units and binaries) and the host's rendered /etc/systemd/system."""

import re

import pytest

from bmms_fab import render
from tests.checkers import sandbox
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.checker
APP_BINARIES = ("gunicorn", "celery")


def units_to_verify(files):
    units = set()
    for f in files:
        m = re.match(r"^/etc/systemd/system/([^/]+)$", f.path)
        d = re.match(r"^/etc/systemd/system/([^/]+)\.d/[^/]+\.conf$", f.path)
        if m:
            name = m.group(1)
            units.update({name.replace("@.", "@blue."), name.replace("@.", "@green.")}
                         if "@." in name else {name})
        elif d:
            units.add(d.group(1))
    return sorted(units)


def verify(env, host, fake_secrets, tmp_path, edit=None):
    need_root(); need_tool("systemd-analyze", "unshare")
    files = render.render_host(env, host, fake_secrets).files
    etc = sandbox.write_files(tmp_path / "etc-systemd", files, "/etc/systemd/system")
    if edit:
        edit(etc)
    units = units_to_verify(files)
    if not units:
        return None, units
    root = tmp_path / "root"
    stubs = [f"/srv/bmms/{where}/venv/bin/{b}" for b in APP_BINARIES
             for where in ("current", "slots/blue", "slots/green")]
    script = "\n".join([
        f"R={root}", "mkdir -p $R/usr $R/etc/systemd/system",
        "mount --bind /usr $R/usr",
        "for d in bin sbin lib lib64; do [ -e /$d ] && ln -sfn usr/$d $R/$d; done",
        f"mount --bind {etc} $R/etc/systemd/system",
        # the app's release is not on this machine: its executables are stand-ins
        *[f"mkdir -p $R{s.rsplit('/', 1)[0]} && printf '#!/bin/sh\\n' > $R{s} && chmod +x $R{s}"
          for s in stubs],
        "systemd-analyze verify --man=no --root=$R " + " ".join(units) + " 2>&1",
    ])
    return sandbox.run(script), units


@pytest.mark.parametrize("env_name", ["lab", "prod"])
def test_every_unit_verifies_cleanly(env_name, inv, fake_secrets, tmp_path):
    env = inv.env(env_name)
    checked = []
    for host in env.hosts:
        r, units = verify(env, host, fake_secrets, tmp_path / host.name)
        if r is None:
            continue
        assert r.returncode == 0 and r.stdout.strip() == "", f"{host.name}: {units}\n{r.stdout}{r.stderr}"
        checked += units
    assert {"bmms-gunicorn@blue.service", "bmms-gunicorn@green.service",
            "bmms-celery-worker.service", "bmms-celery-beat.service",
            "prometheus-pgbouncer-exporter.service"} <= set(checked)


def test_verify_catches_a_bad_unit(inv, fake_secrets, tmp_path):
    env = inv.env("lab")

    def typo(etc):
        unit = etc / "bmms-celery-worker.service"
        unit.write_text(unit.read_text().replace("KillMode=mixed", "KillMode=mixd"))

    r, _ = verify(env, env.host("app2"), fake_secrets, tmp_path, edit=typo)
    assert "kill mode" in r.stdout and "mixd" in r.stdout
