"""The lab, booted once per test run and shared by every lab test. Test files are numbered:
pytest runs them in that order, and destructive tests come last (test_99_down tears it down)."""

import pytest

from bmms_fab import executor, inventory, labctl
from bmms_fab import lab as lab_mod
from bmms_fab import secrets as secrets_mod
from tests.conftest import ROOT, need_root, need_tool


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_env():
    return inventory.load(ROOT / "hosts.yml").env("lab")


@pytest.fixture(scope="session")
def lab(lab_env):
    """The lab, up. Boots it if needed (the first lab test pays for it)."""
    need_root(); need_tool("debootstrap", "systemd-nspawn", "ip", "apt-cacher-ng")
    lab = lab_mod.Lab(lab_env)
    secrets_mod.init(lab_env)
    labctl.up(lab, log=lambda *_: None)
    return lab


@pytest.fixture(scope="session")
def targets(lab, lab_env):
    return executor.targets(lab_env)


def ssh(target, command, check=True):
    """Run a command on a lab host through the engine's own Session (strict host keys)."""
    with executor.Session(target) as s:
        code, out, err = s.exec(command)
    if check and code != 0:
        raise AssertionError(f"{target.name}: {command} -> {code}: {err.decode()}{out.decode()}")
    return out.decode()


@pytest.fixture(scope="session")
def deployed(lab, lab_env):
    """`inv deploy --hosts lab`, once per test run (idempotent: fast when already deployed)."""
    from bmms_fab import deploy, executor as ex
    import io
    out = io.StringIO()
    report = deploy.deploy(lab_env, printer=ex.Printer(out), log=lambda *_: None)
    return report, out.getvalue()


@pytest.fixture(scope="session")
def lab_secrets(lab_env):
    return secrets_mod.load(lab_env)


def main_pids(targets, units_by_host):
    pids = {}
    for t in targets:
        units = units_by_host.get(t.name) or []
        if not units:
            continue
        out = ssh(t, "systemctl show -p Id -p MainPID " + " ".join(units))
        pids[t.name] = out
    return pids


def app_variant(env, workdir, name, edits):
    """The lab environment deploying a modified copy of the demo app (a new release)."""
    import dataclasses
    import shutil
    from pathlib import Path
    app = Path(workdir) / name
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(Path(env.base_dir) / env.app["path"], app,
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    for rel, (old, new) in edits.items():
        f = app / rel
        text = f.read_text() if f.exists() else ""
        assert old in text, f"{rel}: {old!r} not found"
        f.write_text(text.replace(old, new, 1) if old else new)
    return dataclasses.replace(env, app=dict(env.app, path=str(app)))


def lb_get(lab_env, targets, path):
    """GET through the load balancer (run on the LB host)."""
    from bmms_fab import executor as ex, verify as vf
    lb = next(t for t in targets if t.name == lab_env.with_role("lb")[0].name)
    with ex.Session(lb) as s:
        return vf.lb_request(s, lab_env, "GET", path)


def versions(lab_env, targets, rounds=40):
    """host -> (release, colour) as seen through the load balancer."""
    import json
    seen = {}
    want = {h.name for h in lab_env.with_role("web")}
    for _ in range(rounds):
        status, body = lb_get(lab_env, targets, "/version/")
        assert status == 200, (status, body)
        v = json.loads(body)
        seen[v["host"]] = (v["release"], v["color"])
        if want <= set(seen):
            break
    return seen
