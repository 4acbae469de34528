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
