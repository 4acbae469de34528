"""`inv deploy --hosts lab` on the lab: the platform works through the load balancer, data reaches
the replicas, Sentinels agree, Celery runs tasks, Prometheus sees every exporter; a second deploy
changes and restarts nothing."""

import io

import pytest

from bmms_fab import deploy, executor, provision, verify
from tests.lab.conftest import main_pids, ssh


@pytest.fixture(scope="module")
def checks(deployed, lab_env, lab_secrets, targets):
    return {c.name: c for c in verify.verify(lab_env, lab_secrets, {t.name: t for t in targets})}


def check(checks, prefix):
    found = [c for name, c in checks.items() if name.startswith(prefix)]
    assert found, f"no check named {prefix!r}"
    for c in found:
        assert c.ok, str(c)
    return found


def test_deploy_completed(deployed):
    report, output = deployed
    assert report.release and "rolling" in report.seconds


def test_health_and_ready_through_the_load_balancer(checks):
    check(checks, "GET /health/")
    ready = check(checks, "GET /ready/")[0]
    assert '"default": "primary"' in ready.detail and '"replica": "replica"' in ready.detail


def test_version_seen_from_all_four_app_hosts(checks):
    c = check(checks, "/version/ answered by every app host")[0]
    assert all(f"app{i}=" in c.detail for i in range(1, 5))


def test_row_written_through_the_app_is_on_both_replicas(checks):
    check(checks, "row written through the app")
    assert len(check(checks, "row read back on replica")) == 2


def test_all_three_sentinels_name_the_master(checks):
    assert len(check(checks, "Sentinel on")) == 3


def test_celery_task_runs_and_its_result_is_stored(checks):
    check(checks, "Celery task ran")


def test_prometheus_lists_every_exporter_up(checks):
    c = check(checks, "Prometheus on mon1")[0]
    for job in ("node", "postgres", "redis", "pgbouncer", "nginx"):
        assert job in c.detail


def test_rendered_configs_pass_their_checkers_on_the_hosts(deployed, targets):
    """The same files, checked again where they run, against the real binaries."""
    by = {t.name: t for t in targets}
    assert "test is successful" in ssh(by["lb1"], "nginx -t 2>&1")
    assert "SUCCESS" in ssh(by["mon1"], "promtool check config /etc/prometheus/prometheus.yml")
    live = ssh(by["app1"], "cat /srv/bmms/live-color").strip()   # the idle slot may not exist
    out = ssh(by["app1"], f"systemd-analyze verify bmms-gunicorn@{live}.service "
                          "bmms-celery-worker.service bmms-celery-beat.service 2>&1")
    assert out.strip() == "", out
    out = ssh(by["cache1"], "systemd-analyze verify prometheus-pgbouncer-exporter.service 2>&1")
    assert out.strip() == "", out


def test_replicas_stream_from_the_primary(deployed, targets):
    by = {t.name: t for t in targets}
    out = ssh(by["db1"], "runuser -u postgres -- psql -X -Atc "
                         "\"SELECT application_name || ' ' || state FROM pg_stat_replication ORDER BY 1\"")
    assert out.split("\n")[:2] == ["db2 streaming", "db3 streaming"]
    slots = ssh(by["db1"], "runuser -u postgres -- psql -X -Atc "
                           "'SELECT slot_name, active FROM pg_replication_slots ORDER BY 1'")
    assert "replica_db2|t" in slots and "replica_db3|t" in slots


def test_second_deploy_changes_nothing_and_restarts_nothing(deployed, lab_env, targets):
    units = {h.name: provision.services_for(h) + (
        [f"bmms-gunicorn@{c}" for c in ("blue", "green")] if h.has("web") else [])
        for h in lab_env.hosts}
    before = main_pids(targets, units)
    report = deploy.deploy(lab_env, printer=executor.Printer(io.StringIO()), log=lambda *_: None)
    assert report.total == 0, report.summary()
    assert main_pids(targets, units) == before
