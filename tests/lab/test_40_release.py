"""Releases on the lab: an app-only release sends only the app's wheel and reaches every node;
releases that fail check --deploy, a migration or the health gate change nothing that serves;
rollback; the deploy lock; the audit log."""

import io
import json

import pytest

from bmms_fab import deploy, executor, lock
from bmms_fab.deploy import DeployError
from bmms_fab.rolling import GateError
from tests.lab.conftest import app_variant, ssh, versions

VIEWS = "bmms_demo/core/views.py"
QUIET = dict(printer=executor.Printer(io.StringIO()), log=lambda *_: None)


def node_facts(targets, names=("app1", "app2", "app3", "app4")):
    out = {}
    for t in targets:
        if t.name in names:
            live = ssh(t, "cat /srv/bmms/live-color").strip()
            out[t.name] = {"live": live,
                           "release": ssh(t, f"basename $(readlink /srv/bmms/slots/{live})").strip(),
                           "current": ssh(t, "basename $(readlink /srv/bmms/current)").strip()}
    return out


@pytest.fixture(scope="module")
def base(deployed):
    return deployed[0].release


@pytest.fixture(scope="module")
def variant_b(deployed, lab_env, tmp_path_factory):
    env = app_variant(lab_env, tmp_path_factory.mktemp("apps"), "b", {
        VIEWS: ('"pid": os.getpid()})', '"pid": os.getpid(), "variant": "B"})')})
    report = deploy.deploy(env, **QUIET)
    return env, report


def test_app_only_release_sends_only_the_app_wheel(variant_b, base, lab_env, targets):
    env, report = variant_b
    assert report.release != base
    app_wheel = next(w for w in report_wheels(report) if w.startswith("bmms_demo-"))
    size = (report_dir(report) / "wheels" / app_wheel).stat().st_size
    assert report.bytes_sent == {f"app{i}": size for i in range(1, 5)}, report.bytes_sent
    seen = versions(lab_env, targets)
    assert {h: r for h, (r, _) in seen.items()} == {f"app{i}": report.release for i in range(1, 5)}
    status, body = __import__("tests.lab.conftest", fromlist=["lb_get"]).lb_get(
        lab_env, targets, "/version/")
    assert json.loads(body)["variant"] == "B"
    assert all(f["current"] == report.release for f in node_facts(targets).values())


def report_dir(report):
    from bmms_fab.release import BUILD_DIR
    return next(p for p in (BUILD_DIR / "releases").iterdir()
                if (p / "release.json").exists()
                and json.loads((p / "release.json").read_text())["id"] == report.release)


def report_wheels(report):
    return json.loads((report_dir(report) / "release.json").read_text())["wheels"]


def assert_unchanged(before, targets, lab_env):
    assert node_facts(targets) == before
    seen = versions(lab_env, targets)
    assert {h: r for h, (r, _) in seen.items()} == {h: f["release"] for h, f in before.items()}


def test_release_failing_check_deploy_leaves_every_host_as_it_was(variant_b, lab_env, targets,
                                                                   tmp_path_factory):
    before = node_facts(targets)
    env = app_variant(lab_env, tmp_path_factory.mktemp("apps"), "debug", {
        "bmms_demo/settings.py": ("DEBUG = False", "DEBUG = True")})
    with pytest.raises(DeployError) as exc:
        deploy.deploy(env, **QUIET)
    assert exc.value.phase == "release"
    assert "check --deploy" in str(exc.value) or "security.W018" in str(exc.value)
    assert "app1" in str(exc.value)
    assert_unchanged(before, targets, lab_env)


def test_release_failing_a_migration_leaves_every_host_as_it_was(variant_b, lab_env, targets,
                                                                  tmp_path_factory):
    before = node_facts(targets)
    migration = ("from django.db import migrations\n\n\ndef fail(apps, schema_editor):\n"
                 "    raise RuntimeError('this migration fails on purpose')\n\n\n"
                 "class Migration(migrations.Migration):\n"
                 "    dependencies = [('core', '0001_initial')]\n"
                 "    operations = [migrations.RunPython(fail)]\n")
    env = app_variant(lab_env, tmp_path_factory.mktemp("apps"), "badmig", {
        "bmms_demo/core/migrations/0002_fail.py": ("", migration)})
    with pytest.raises(DeployError) as exc:
        deploy.deploy(env, **QUIET)
    assert exc.value.phase == "migrate" and "this migration fails on purpose" in str(exc.value)
    assert_unchanged(before, targets, lab_env)


def test_release_whose_ready_fails_stops_at_the_first_node(variant_b, lab_env, targets,
                                                            tmp_path_factory):
    before = node_facts(targets)
    env = app_variant(lab_env, tmp_path_factory.mktemp("apps"), "notready", {
        VIEWS: ('def ready(request):\n',
                'def ready(request):\n    return JsonResponse({"status": "broken"}, status=503)\n')})
    with pytest.raises(DeployError) as exc:
        deploy.deploy(env, **QUIET)
    assert exc.value.phase == "rolling"
    [gate] = exc.value.failures
    assert isinstance(gate, GateError) and gate.host == "app1"
    assert "/ready/ -> 503" in str(gate) and "journal of bmms-gunicorn@" in str(gate)
    assert_unchanged(before, targets, lab_env)        # app1 too: its old colour still serves


def test_rollback_returns_to_the_previous_release(variant_b, base, lab_env, targets):
    report = deploy.rollback(lab_env, printer=executor.Printer(io.StringIO()))
    assert report.release == base
    facts = node_facts(targets)
    assert all(f["release"] == base and f["current"] == base for f in facts.values())
    assert {r for r, _ in versions(lab_env, targets).values()} == {base}


def test_rollback_to_a_named_release(variant_b, base, lab_env, targets):
    b = variant_b[1].release
    deploy.rollback(lab_env, to=b, printer=executor.Printer(io.StringIO()))
    assert {r for r, _ in versions(lab_env, targets).values()} == {b}
    with pytest.raises(Exception) as exc:
        deploy.rollback(lab_env, to="no-such-release", printer=executor.Printer(io.StringIO()))
    assert "not installed on app1" in str(exc.value)
    deploy.rollback(lab_env, to=base, printer=executor.Printer(io.StringIO()))


def test_concurrent_deploy_is_refused(deployed, lab_env):
    with lock.locked(lab_env, "deploy", "r-test"):
        with pytest.raises(lock.LockedError) as exc:
            deploy.deploy(lab_env, **QUIET)
    msg = str(exc.value)
    assert "lab is locked by" in msg and "deploy of release r-test" in msg and "since" in msg
    assert exc.value.info["from"] not in ("", "?")        # where the holder connected from


def test_stale_lock_is_shown_and_released_explicitly(deployed, lab_env, targets):
    lb = lock.lock_target(lab_env)
    with executor.Session(lb) as s:
        lock.acquire(s, "lab", "rolling-restart", None)     # as if that run had been killed
    import subprocess, sys
    from tests.conftest import ROOT
    inv = lambda *a: subprocess.run([sys.executable, "-m", "invoke", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True)
    r = inv("lock.status", "--hosts", "lab")
    assert "locked by" in r.stdout and "rolling-restart" in r.stdout
    r = inv("rolling-restart", "--hosts", "lab")
    assert r.returncode == 3 and "is locked by" in r.stderr
    r = inv("lock.release", "--hosts", "lab", "--yes")
    assert r.returncode == 0 and "lock released" in r.stdout
    assert "not locked" in inv("lock.status", "--hosts", "lab").stdout


def test_audit_log_records_each_run(deployed, targets):
    lb1 = next(t for t in targets if t.name == "lb1")
    entries = [json.loads(l) for l in ssh(lb1, "cat /var/log/bmms-fab/audit.log").splitlines()]
    tasks = [(e["task"], e["result"].split(":")[0]) for e in entries]
    assert ("deploy", "ok") in tasks and ("deploy", "failed") in tasks
    assert ("rollback", "ok") in tasks and ("lock.release", "released lock of root@" + __import__("socket").gethostname()) in [
        (e["task"], e["result"]) for e in entries]
    for e in entries:
        assert set(e) >= {"who", "when", "task", "release", "result", "duration_s", "env"}
