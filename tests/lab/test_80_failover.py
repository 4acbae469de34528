"""Failover on the lab (destructive, near the end): PostgreSQL primary killed and a replica
promoted, the old primary fenced then rejoined; the Redis master stopped and Sentinel's new
master found by the app without any restart; a deploy afterwards changes nothing."""

import io
import json
import time

from bmms_fab import deploy, executor, failover
from tests.lab.conftest import lb_get, main_pids, ssh


def by(targets, name):
    return next(t for t in targets if t.name == name)


def write(lab_env, targets):
    from bmms_fab import verify as vf
    with executor.Session(by(targets, "lb1")) as s:
        return vf.lb_request(s, lab_env, "POST", "/api/notes/", json.dumps({"text": "failover"}))[0]


def test_promote_after_the_primary_dies(deployed, lab_env, lab_secrets, targets):
    db1 = by(targets, "db1")
    assert failover.effective(lab_env, failover.read_state(lab_env))[0] == "db1"
    ssh(db1, "systemctl kill --signal=KILL postgresql@15-main")
    time.sleep(1)
    assert write(lab_env, targets) != 201
    t0 = time.monotonic()
    result = failover.promote(lab_env, lab_secrets, printer=executor.Printer(io.StringIO()),
                              log=lambda *_: None)
    first = None
    for _ in range(120):
        if write(lab_env, targets) == 201:
            first = time.monotonic()
            break
        time.sleep(0.25)
    assert first is not None, "no successful write after promote"
    print(f"\npromote: {result['new']} primary; first successful write "
          f"{first - result['promoted_at']:.2f}s after promotion ({first - t0:.2f}s after the "
          f"promote command started)")
    assert result["new"] == "db2" and result["fence"] == "stopped and masked"
    assert ssh(db1, "systemctl is-enabled postgresql@15-main || true").strip() == "masked"
    assert "host=198.18.0.22 " in ssh(by(targets, "cache1"), "cat /etc/pgbouncer/databases.ini")
    out = ssh(by(targets, "db2"), "runuser -u postgres -- psql -X -Atc "
                                  "\"SELECT application_name, state FROM pg_stat_replication\"")
    assert "db3|streaming" in out


def test_rejoin_makes_the_old_primary_a_replica(deployed, lab_env, lab_secrets, targets):
    failover.rejoin(lab_env, lab_secrets, printer=executor.Printer(io.StringIO()), log=lambda *_: None)
    db1 = by(targets, "db1")
    assert ssh(db1, "runuser -u postgres -- psql -X -Atc 'SELECT pg_is_in_recovery()'").strip() == "t"
    out = ssh(by(targets, "db2"), "runuser -u postgres -- psql -X -Atc "
                                  "\"SELECT application_name || ' ' || state FROM pg_stat_replication ORDER BY 1\"")
    assert out.split("\n")[:2] == ["db1 streaming", "db3 streaming"]
    assert write(lab_env, targets) == 201


def test_redis_master_stops_and_the_app_recovers_without_restart(deployed, lab_env, targets):
    units = {h.name: [f"bmms-gunicorn@{c}" for c in ("blue", "green")] + ["bmms-celery-worker"]
             for h in lab_env.with_role("web")}
    pids = main_pids(targets, units)
    assert lb_get(lab_env, targets, "/ready/")[0] == 200
    cache1 = by(targets, "cache1")
    ssh(cache1, "systemctl stop redis-server")
    t0 = time.monotonic()
    recovered = None
    for _ in range(240):
        status, body = lb_get(lab_env, targets, "/ready/")
        if status == 200 and "198.18.0.31" not in body:
            recovered = time.monotonic()
            break
        time.sleep(0.25)
    assert recovered is not None, body
    print(f"\nredis failover: /ready/ recovered {recovered - t0:.1f}s after the master stopped "
          f"({json.loads(body)['checks']['redis']})")
    assert main_pids(targets, units) == pids                # no app process restarted
    ssh(cache1, "systemctl start redis-server")             # comes back as a replica
    for _ in range(60):
        role = ssh(cache1, "grep -c '^replicaof' /etc/redis/redis.conf || true").strip()
        if role == "1":
            break
        time.sleep(0.5)
    assert role == "1"


def test_deploy_after_failovers_changes_nothing(deployed, lab_env, targets):
    report = deploy.deploy(lab_env, printer=executor.Printer(io.StringIO()), log=lambda *_: None)
    assert report.total == 0, report.summary()
