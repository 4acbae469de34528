"""One test per validation rule: each error names the YAML path and line."""

import pytest

from bmms_fab import inventory
from bmms_fab.errors import InventoryError

BASE = """\
environments:
  t:
    domain: t.example.org
    app:
      path: app
      settings_module: s
      wsgi_app: w:app
      celery_app: c
    hosts:
      - {name: lb1, address: 198.18.1.10, roles: [lb]}
      - {name: app1, address: 198.18.1.11, roles: [web, worker, beat]}
      - {name: db1, address: 198.18.1.21, roles: [db_primary]}
      - {name: db2, address: 198.18.1.22, roles: [db_replica, sentinel]}
      - {name: c1, address: 198.18.1.31, roles: [redis_master, sentinel, pgbouncer]}
      - {name: c2, address: 198.18.1.32, roles: [redis_replica, sentinel]}
"""


def problems(text):
    with pytest.raises(InventoryError) as exc:
        inventory.parse(text, "hosts.yml")
    assert exc.value.exit_code == 2
    return exc.value.problems


def one(text):
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_base_is_valid():
    env = inventory.parse(BASE, "hosts.yml").env("t")
    assert [h.name for h in env.with_role("sentinel")] == ["db2", "c1", "c2"]
    assert env.ssh["port"] == 22 and env.host("db1").port == 22


def test_shipped_inventory_is_valid(inv):
    assert set(inv.environments) >= {"prod", "lab"}
    for env in inv.environments.values():
        assert len(env.with_role("web")) == 4
        assert len(env.with_role("db_replica")) == 2
        assert len(env.with_role("sentinel")) == 3


def test_lab_addresses_in_benchmark_range(inv):
    import ipaddress
    net = ipaddress.ip_network("198.18.0.0/15")
    for h in inv.env("lab").hosts:
        assert ipaddress.ip_address(h.address) in net


def test_unknown_key_names_path_and_line():
    p = one(BASE.replace("    domain:", "    domian: x\n    domain:"))
    assert (p.path, p.line) == ("environments.t.domian", 3)
    assert "unknown key" in p.message and "domain" in p.message


def test_unknown_host_key():
    p = one(BASE.replace("{name: lb1,", "{name: lb1, adress: x,"))
    assert p.path == "environments.t.hosts[0].adress" and p.line == 10


def test_unknown_role():
    p = one(BASE.replace("roles: [lb]", "roles: [lbb]"))
    assert p.path == "environments.t.hosts[0].roles[0]" and "'lbb' is not one of" in p.message


def test_wrong_type():
    p = one(BASE.replace("{name: lb1, address: 198.18.1.10,", "{name: lb1, address: 198.18.1.10, port: x,"))
    assert p.path == "environments.t.hosts[0].port" and "whole number" in p.message


def test_port_out_of_range():
    p = one(BASE.replace("{name: lb1, address: 198.18.1.10,", "{name: lb1, address: 198.18.1.10, port: 70000,"))
    assert "out of range" in p.message and p.line == 10


def test_exactly_one_db_primary():
    p = one(BASE.replace("[db_replica, sentinel]", "[db_primary, sentinel]"))
    assert "exactly one host with role 'db_primary', found 2" in p.message


def test_at_least_one_web():
    found = problems(BASE.replace("[web, worker, beat]", "[worker, beat]"))
    assert any("at least one host with role 'web'" in p.message for p in found)


def test_sentinels_odd_and_at_least_three():
    p = one(BASE.replace("[redis_replica, sentinel]", "[redis_replica]")
            .replace("vars", "vars").replace("    hosts:", "    vars: {sentinel_quorum: 1}\n    hosts:"))
    assert "odd number of Sentinels, at least 3" in p.message


def test_quorum_not_above_sentinel_count():
    p = one(BASE.replace("    hosts:", "    vars: {sentinel_quorum: 4}\n    hosts:"))
    assert p.path == "environments.t.vars.sentinel_quorum" and p.line == 9
    assert "more than the 3 Sentinels" in p.message


def test_unique_names():
    p = one(BASE.replace("{name: c2,", "{name: c1,"))
    assert p.path == "environments.t.hosts[5].name" and "duplicate name 'c1'" in p.message


def test_unique_addresses():
    p = one(BASE.replace("198.18.1.32", "198.18.1.31"))
    assert p.path == "environments.t.hosts[5].address" and "duplicate address" in p.message


def test_roles_that_need_each_other():
    found = problems(BASE.replace("[redis_master, sentinel, pgbouncer]", "[redis_master, sentinel]"))
    assert any("needs a host with role 'pgbouncer'" in p.message for p in found)


def test_replica_needs_master():
    text = BASE.replace("[redis_master, sentinel, pgbouncer]", "[sentinel, pgbouncer]")
    found = problems(text)
    assert any("role 'redis_replica' (on c2) needs a host with role 'redis_master'" in p.message
               for p in found)


def test_beat_is_a_singleton():
    p = one(BASE.replace("[redis_replica, sentinel]", "[redis_replica, sentinel, worker, beat]"))
    assert "at most one (beat is a singleton)" in p.message


def test_missing_required_key():
    p = one(BASE.replace("    domain: t.example.org\n", ""))
    assert "missing required key 'domain'" in p.message and p.path == "environments.t"


def test_invalid_yaml_names_line():
    p = one(BASE + "  bad: [unclosed\n")
    assert "not valid YAML" in p.message and p.line is not None


def test_app_needs_exactly_one_source():
    p = one(BASE.replace("      path: app\n", ""))
    assert p.path == "environments.t.app" and "exactly one of 'path'" in p.message


def test_every_problem_reported_at_once():
    text = (BASE.replace("roles: [lb]", "roles: [lbb]").replace("    domain:", "    domian: x\n    domain:")
            .replace("{name: c2, address: 198.18.1.32,", "{name: c2, address: 198.18.1.32, port: 0,"))
    found = problems(text)   # unknown key, unknown role, bad port: all at once, in line order
    assert [p.path.split(".")[-1] for p in found] == ["domian", "roles[0]", "port"]


def test_unknown_environment(inv):
    with pytest.raises(InventoryError) as exc:
        inv.env("nope")
    assert "no such environment" in str(exc.value) and "lab" in str(exc.value)


def test_duplicate_key_is_an_error_but_merge_override_is_not():
    p = one(BASE.replace("    domain: t.example.org\n", "    domain: t.example.org\n    domain: x.org\n"))
    assert "duplicate key 'domain'" in p.message and p.line == 4
    text = BASE.replace("environments:", "x-d: &d {domain: a.org, description: base}\nenvironments:")
    text = text.replace("    domain: t.example.org\n", "    <<: *d\n    description: mine\n")
    env = inventory.parse(text, "hosts.yml").env("t")
    assert (env.domain, env.description) == ("a.org", "mine")
