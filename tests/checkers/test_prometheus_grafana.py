"""promtool on the rendered Prometheus config and rules; Grafana provisioning checked for the
fields Grafana reads (Grafana itself has no Debian package)."""

import json
import subprocess

import pytest
import yaml

from bmms_fab import render
from tests.conftest import need_tool

pytestmark = pytest.mark.checker


def monitoring_files(inv, fake_secrets, env_name, tmp_path):
    env = inv.env(env_name)
    host = env.with_role("monitoring")[0]
    files = render.render_host(env, host, fake_secrets).by_path()
    render.write_tree({host.name: render.render_host(env, host, fake_secrets)}, tmp_path)
    return env, files, tmp_path / host.name


@pytest.mark.parametrize("env_name", ["lab", "prod"])
def test_promtool_checks_config_and_rules(env_name, inv, fake_secrets, tmp_path):
    need_tool("promtool")
    env, files, root = monitoring_files(inv, fake_secrets, env_name, tmp_path)
    config = root / "etc/prometheus/prometheus.yml"
    r = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout and "bmms-rules.yml" in r.stdout   # rules were checked too
    r = subprocess.run(["promtool", "check", "rules", str(root / "etc/prometheus/bmms-rules.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: 9 rules found" in r.stdout, r.stdout + r.stderr


def test_every_exporter_of_every_host_is_scraped(inv, fake_secrets, tmp_path):
    env, files, _ = monitoring_files(inv, fake_secrets, "lab", tmp_path)
    conf = yaml.safe_load(files["/etc/prometheus/prometheus.yml"].content)
    targets = {(job["job_name"], t) for job in conf["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]}
    for h in env.hosts:
        assert ("node", f"{h.address}:9100") in targets
        if h.has("db_primary") or h.has("db_replica"):
            assert ("postgres", f"{h.address}:9187") in targets
        if h.has("redis_master") or h.has("redis_replica"):
            assert ("redis", f"{h.address}:9121") in targets
        if h.has("pgbouncer"):
            assert ("pgbouncer", f"{h.address}:9127") in targets
        if h.has("lb"):
            assert ("nginx", f"{h.address}:9113") in targets


def test_promtool_rejects_a_broken_rule(inv, fake_secrets, tmp_path):
    need_tool("promtool")
    _, files, root = monitoring_files(inv, fake_secrets, "lab", tmp_path)
    rules = root / "etc/prometheus/bmms-rules.yml"
    rules.write_text(rules.read_text().replace("expr: up == 0", "expr: up == = 0"))
    r = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert r.returncode != 0


def test_grafana_provisioning(inv, fake_secrets, tmp_path):
    _, files, _ = monitoring_files(inv, fake_secrets, "lab", tmp_path)
    ds = yaml.safe_load(files["/etc/grafana/provisioning/datasources/bmms.yml"].content)
    assert ds["apiVersion"] == 1
    [source] = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://localhost:9090"
    prov = yaml.safe_load(files["/etc/grafana/provisioning/dashboards/bmms.yml"].content)
    path = prov["providers"][0]["options"]["path"]
    dashboards = [f for p, f in files.items() if p.startswith(path + "/")]
    assert dashboards, "no dashboard in the provider's folder"
    for f in dashboards:
        dash = json.loads(f.content)
        assert dash["uid"] and dash["title"] and dash["panels"]
        for panel in dash["panels"]:
            for target in panel["targets"]:
                # each query must be valid PromQL: promtool parses it as a rule expression
                assert target["expr"]
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        check_promql(exprs, tmp_path)


def check_promql(exprs, tmp_path):
    """Parse dashboard queries with promtool (as recording rules) so a typo fails the test."""
    if not __import__("shutil").which("promtool"):
        return
    rules = {"groups": [{"name": "dash", "rules": [
        {"record": f"dash:q{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    f = tmp_path / "dash-rules.yml"
    f.write_text(yaml.safe_dump(rules))
    r = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
