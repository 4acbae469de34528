"""Hardening, checked by trying to get past it: only the roles that need a port reach it, a
firewall that locks the operator out rolls itself back, TLS and rate limits hold, Redis and
Sentinel refuse strangers, secrets are in no command line, file or output they should not be."""

import dataclasses
import io
import subprocess
import sys
import time

import pytest

from bmms_fab import engine, executor, render
from bmms_fab.plan import HostPlan
from tests.conftest import ROOT
from tests.lab.conftest import ssh


def by(targets, name):
    return next(t for t in targets if t.name == name)


def connect(targets, src, address, port):
    out = ssh(by(targets, src), f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>&1 "
                                "&& echo OPEN || echo CLOSED")
    return "open" if out.strip().endswith("OPEN") else ("refused" if "refused" in out else out)


MATRIX = [   # (from, to, port, expected): a host without the role, then one with it
    ("lb1", "198.18.0.21", 5432, "refused"), ("cache1", "198.18.0.21", 5432, "open"),
    ("lb1", "198.18.0.31", 6432, "refused"), ("app1", "198.18.0.31", 6432, "open"),
    ("lb1", "198.18.0.31", 6379, "refused"), ("app2", "198.18.0.31", 6379, "open"),
    ("lb1", "198.18.0.22", 26379, "refused"), ("app3", "198.18.0.22", 26379, "open"),
    ("db1", "198.18.0.11", 9100, "refused"), ("mon1", "198.18.0.11", 9100, "open"),
    ("app4", "198.18.0.22", 9187, "refused"), ("mon1", "198.18.0.22", 9187, "open"),
    ("db3", "198.18.0.10", 9113, "refused"), ("mon1", "198.18.0.10", 9113, "open"),
    ("db3", "198.18.0.10", 443, "open"),
    ("app1", "198.18.0.21", 22, "refused"),          # SSH only from the control address
]


@pytest.mark.parametrize("src,address,port,expected", MATRIX)
def test_only_hosts_with_the_role_reach_a_port(deployed, targets, src, address, port, expected):
    assert connect(targets, src, address, port) == expected


def test_gunicorn_only_from_the_load_balancer(deployed, targets):
    live = ssh(by(targets, "app1"), "cat /srv/bmms/live-color").strip()
    port = {"blue": 8001, "green": 8002}[live]
    assert connect(targets, "db1", "198.18.0.11", port) == "refused"
    assert connect(targets, "lb1", "198.18.0.11", port) == "open"


def test_a_firewall_that_locks_the_operator_out_rolls_back(deployed, lab_env, lab_secrets, targets):
    db3 = by(targets, "db3")
    wrong = dataclasses.replace(lab_env, control_address="198.18.0.99")   # not where we are
    plan = render.render_host(wrong, wrong.host("db3"), lab_secrets)
    fw = HostPlan("db3", tuple(f for f in plan.files if f.path == "/etc/nftables.conf"))
    results = engine.converge([db3], {"db3": fw}, printer=executor.Printer(io.StringIO()))
    err = results["db3"].error
    assert err is not None and err.step == "confirm firewall", results["db3"]
    back = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 90:
        try:
            with executor.Session(dataclasses.replace(db3, connect_timeout=3)) as s:
                s.exec("true")
            back = time.monotonic() - t0
            break
        except Exception:
            time.sleep(2)
    assert back is not None, "SSH did not come back: the rollback timer did not fire"
    print(f"\nfirewall lock-out: rules rolled back, SSH back after {back:.0f}s")
    good = render.render_host(lab_env, lab_env.host("db3"), lab_secrets)
    fixed = engine.converge([db3], {"db3": HostPlan("db3", tuple(
        f for f in good.files if f.path == "/etc/nftables.conf"))},
        printer=executor.Printer(io.StringIO()))
    assert fixed["db3"].error is None


def test_plain_http_is_redirected_and_tls_is_modern(deployed, lab_env, targets):
    app1 = by(targets, "app1")
    out = ssh(app1, "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://198.18.0.10/x")
    assert out.startswith("301 https://")
    hdrs = ssh(app1, f"curl -skI --resolve {lab_env.domain}:443:198.18.0.10 https://{lab_env.domain}/health/")
    assert "strict-transport-security: max-age=63072000" in hdrs.lower()
    lb1 = by(targets, "lb1")
    # the client allows TLS 1.1 (security level 0): a refusal is the server's
    old = ssh(lb1, "echo | timeout 5 openssl s_client -connect 127.0.0.1:443 -tls1_1 "
                   "-cipher 'DEFAULT@SECLEVEL=0' 2>&1 | grep -c '^New, TLSv1.1' || true")
    new = ssh(lb1, "echo | timeout 5 openssl s_client -connect 127.0.0.1:443 -tls1_2 2>&1 | "
                   "grep -c '^New, TLSv1.2' || true")
    assert old.strip() == "0" and new.strip() == "1"


def test_the_sixth_login_in_a_minute_gets_429(deployed, lab_env, targets):
    app3 = by(targets, "app3")
    codes = ssh(app3, "for i in 1 2 3 4 5 6; do curl -sk -o /dev/null -w '%{http_code} ' -X POST "
                      f"--resolve {lab_env.domain}:443:198.18.0.10 https://{lab_env.domain}/accounts/login/; done")
    assert codes.split() == ["200"] * 5 + ["429"], codes


def test_redis_and_sentinel_refuse_without_auth(deployed, targets):
    app1 = by(targets, "app1")
    assert "NOAUTH" in ssh(app1, "redis-cli -h 198.18.0.31 PING 2>&1 || true") or \
        "NOAUTH" in ssh(by(targets, "db2"), "redis-cli -h 198.18.0.31 PING 2>&1 || true")
    assert "NOAUTH" in ssh(by(targets, "db2"), "redis-cli -h 198.18.0.22 -p 26379 PING 2>&1 || true")


def test_secret_files_on_hosts_are_not_readable_by_others(deployed, lab_env, lab_secrets, targets):
    for t in targets:
        plan = render.render_host(lab_env, lab_env.host(t.name), lab_secrets)
        secret_files = [f for f in plan.files if f.secret]
        if not secret_files:
            continue
        out = ssh(t, "stat -c '%n %U %a' " + " ".join(f.path for f in secret_files))
        for line in out.splitlines():
            path, owner, mode = line.split()
            f = next(x for x in secret_files if x.path == path)
            assert int(mode, 8) & 0o007 == 0, line
            assert owner == f.owner, line


def test_no_secret_in_any_command_line(deployed, lab_secrets, targets):
    values = lab_secrets.values()
    for t in targets:
        cmdlines = ssh(t, "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done")
        for v in values:
            assert v not in cmdlines, f"{t.name}: a secret is in a command line"


def test_no_secret_in_the_tools_output_or_logs(deployed, lab_secrets):
    runs = [["deploy", "--hosts", "lab"], ["verify", "--hosts", "lab"],
            ["configure", "--hosts", "lab", "--diff"], ["backup", "--hosts", "lab", "--verify"],
            ["lock.status", "--hosts", "lab"], ["render", "--hosts", "lab", "--out", "/tmp/bmms-r"]]
    text = deployed[1]
    for args in runs:
        r = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, (args, r.stderr[-500:])
        text += r.stdout + r.stderr
    from bmms_fab import lock
    for log in lock.LOCAL_AUDIT_DIR.glob("*.log"):
        text += log.read_text()
    for v in lab_secrets.values():
        assert v not in text


def test_audit_units_reports_every_unit_ok_or_better(deployed):
    r = subprocess.run([sys.executable, "-m", "invoke", "audit.units", "--hosts", "lab"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [l.split() for l in r.stdout.splitlines()]
    units = {row[1] for row in rows}
    assert {"bmms-celery-worker.service", "bmms-celery-beat.service",
            "prometheus-pgbouncer-exporter.service"} <= units
    assert any(u.startswith("bmms-gunicorn@") for u in units)
    assert all(row[3] in ("PERFECT", "SAFE", "OK") for row in rows), r.stdout
