"""nft checks every host's rendered firewall; the rules let in exactly the roles that need a port."""

import pytest

from bmms_fab import render
from bmms_fab.roles import firewall
from tests.checkers import sandbox
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.checker


@pytest.mark.parametrize("env_name", ["lab", "prod"])
def test_nft_accepts_every_hosts_rules(env_name, inv, fake_secrets, tmp_path):
    need_root(); need_tool("nft", "unshare")
    env = inv.env(env_name)
    for host in env.hosts:
        conf = render.render_host(env, host, fake_secrets).by_path()["/etc/nftables.conf"]
        f = tmp_path / f"{host.name}.nft"
        f.write_bytes(conf.content)
        r = sandbox.run(f"nft -c -f {f}")        # in a private network namespace
        assert r.returncode == 0, f"{host.name}: {r.stderr}"


def test_nft_rejects_a_broken_ruleset(inv, fake_secrets, tmp_path):
    need_root(); need_tool("nft", "unshare")
    env = inv.env("lab")
    conf = render.render_host(env, env.host("db1"), fake_secrets).by_path()["/etc/nftables.conf"]
    f = tmp_path / "bad.nft"
    f.write_text(conf.content.decode().replace("policy drop;", "policy dorp;"))
    assert sandbox.run(f"nft -c -f {f}").returncode != 0


def test_ssh_rule_comes_first_and_sources_follow_roles(inv, fake_secrets):
    env = inv.env("lab")
    text = render.render_host(env, env.host("cache1"), fake_secrets).by_path()[
        "/etc/nftables.conf"].content.decode()
    rules = [l.strip() for l in text.splitlines() if l.strip().startswith(("tcp", "iif", "ct", "meta", "ip "))]
    assert rules[0] == "tcp dport 22 ip saddr 198.18.0.1 accept"
    ctx = render.Context(env, env.host("cache1"), fake_secrets)
    got = {what: sources for what, _, sources in firewall.rules(ctx)}
    apps = ["198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14"]
    assert got["pgbouncer"] == apps
    assert got["redis"] == sorted(apps + ["198.18.0.22", "198.18.0.23", "198.18.0.41"])
    assert got["exporters"] == ["198.18.0.41"]
