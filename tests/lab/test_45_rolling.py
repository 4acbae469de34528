"""inv rolling-restart on the lab: every node changes colour on the same release; --limit;
--dry-run changes nothing; an interrupted run leaves each node served by one healthy colour and a
re-run finishes; Celery restarts warm and loses no task."""

import json
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.lab.conftest import lb_get, ssh, versions

WEB = ("app1", "app2", "app3", "app4")


def inv(*args, **kw):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, **kw)


def live(targets):
    return {t.name: ssh(t, "cat /srv/bmms/live-color").strip() for t in targets if t.name in WEB}


def served_by_one_healthy_colour(targets, lab_env):
    """Each node: its live colour's unit is active, the LB sends it there, and only there."""
    colors = live(targets)
    lb1 = next(t for t in targets if t.name == "lb1")
    conf = ssh(lb1, "cat /etc/nginx/nginx.conf")
    for t in targets:
        if t.name not in WEB:
            continue
        port = {"blue": 8001, "green": 8002}[colors[t.name]]
        other = {"blue": 8002, "green": 8001}[colors[t.name]]
        assert f"{t.address}:{port} " in conf and f"{t.address}:{other} " not in conf, t.name
        assert ssh(t, f"systemctl is-active bmms-gunicorn@{colors[t.name]}").strip() == "active"
    seen = versions(lab_env, targets)
    assert {h: c for h, (_, c) in seen.items()} == colors


def test_dry_run_prints_the_plan_and_changes_nothing(deployed, targets):
    before = live(targets)
    r = inv("rolling-restart", "--hosts", "lab", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "[app3] app3: start" in r.stdout and "warm restart of bmms-celery-worker" in r.stdout
    assert live(targets) == before


def test_rolling_restart_moves_every_node_to_its_other_colour(deployed, targets, lab_env):
    before = live(targets)
    releases = {h: r for h, (r, _) in versions(lab_env, targets).items()}
    r = inv("rolling-restart", "--hosts", "lab")
    assert r.returncode == 0, r.stdout + r.stderr
    after = live(targets)
    assert all(after[n] != before[n] for n in WEB), (before, after)
    assert {h: r for h, (r, _) in versions(lab_env, targets).items()} == releases
    served_by_one_healthy_colour(targets, lab_env)


def test_limit_restricts_the_nodes(deployed, targets, lab_env):
    before = live(targets)
    r = inv("rolling-restart", "--hosts", "lab", "--limit", "app2")
    assert r.returncode == 0, r.stderr
    after = live(targets)
    assert [n for n in WEB if after[n] != before[n]] == ["app2"]
    r = inv("rolling-restart", "--hosts", "lab", "--limit", "db1")
    assert r.returncode == 2 and "not web nodes" in r.stderr


def test_interrupted_rollout_keeps_every_node_served_and_a_rerun_finishes(deployed, targets, lab_env):
    before = live(targets)
    p = subprocess.Popen([sys.executable, "-m", "invoke", "rolling-restart", "--hosts", "lab"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in p.stdout:          # Ctrl-C while app2's new colour is starting / being gated
        lines.append(line)
        if line.startswith("[app2] starting"):
            time.sleep(1.0)
            p.send_signal(signal.SIGINT)
            break
    rest, _ = p.communicate(timeout=120)
    assert p.returncode != 0, "".join(lines) + rest
    mid = live(targets)
    assert mid["app1"] != before["app1"] and mid["app2"] == before["app2"]
    assert mid["app3"] == before["app3"] and mid["app4"] == before["app4"]
    served_by_one_healthy_colour(targets, lab_env)
    app2 = next(t for t in targets if t.name == "app2")
    idle = "green" if mid["app2"] == "blue" else "blue"
    assert ssh(app2, f"systemctl is-active bmms-gunicorn@{idle} || true").strip() != "active"
    r = inv("lock.status", "--hosts", "lab")
    assert "not locked" in r.stdout          # the interrupted run released its lock
    r = inv("rolling-restart", "--hosts", "lab")
    assert r.returncode == 0, r.stdout + r.stderr
    served_by_one_healthy_colour(targets, lab_env)


def test_celery_restart_is_warm_and_loses_no_task(deployed, targets, lab_env):
    from bmms_fab import executor, verify
    lb = next(t for t in targets if t.name == "lb1")
    with executor.Session(lb) as s:
        status, body = verify.lb_request(s, lab_env, "POST", "/api/tasks/",
                                         json.dumps({"text": "slow", "delay": 6}))
    task_id = json.loads(body)["task_id"]
    time.sleep(1.5)                    # a worker has it now, running
    for t in targets:
        if t.name in WEB:
            ssh(t, "systemctl restart bmms-celery-worker")   # SIGTERM: warm shutdown
    for _ in range(60):
        status, body = lb_get(lab_env, targets, f"/api/tasks/{task_id}/")
        if status == 200:
            break
        time.sleep(1)
    assert status == 200 and json.loads(body)["done"], body
