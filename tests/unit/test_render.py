import pytest

from bmms_fab import render
from bmms_fab.errors import RenderError
from bmms_fab.plan import Handler


def plan(inv, fake_secrets, env="lab", host="lb1", **kw):
    e = inv.env(env)
    return render.render_host(e, e.host(host), fake_secrets, **kw).by_path()


def test_every_host_of_every_environment_renders(inv, fake_secrets):
    for env in inv.environments.values():
        plans = render.render_env(env, fake_secrets)
        assert set(plans) == {h.name for h in env.hosts}


def test_upstream_follows_each_nodes_live_colour(inv, fake_secrets):
    conf = plan(inv, fake_secrets, active_colors={"app2": "green"})["/etc/nginx/nginx.conf"]
    text = conf.content.decode()
    assert "least_conn;" in text
    assert "198.18.0.11:8001" in text and "198.18.0.12:8002" in text
    assert "198.18.0.12:8001" not in text


def test_lb_limits_and_tls(inv, fake_secrets):
    text = plan(inv, fake_secrets)["/etc/nginx/nginx.conf"].content.decode()
    for needle in ("rate=100r/m", "rate=5r/m", "ssl_protocols TLSv1.2 TLSv1.3",
                   "Strict-Transport-Security", "client_max_body_size 100m", "max-age=31536000, immutable",
                   "location = /ready/", "proxy_buffering off", "$http_upgrade"):
        assert needle in text, needle


def test_prod_uses_operator_certificate(inv, fake_secrets):
    text = plan(inv, fake_secrets, env="prod")["/etc/nginx/nginx.conf"].content.decode()
    assert "ssl_certificate /etc/ssl/bmms/bmms.crt;" in text
    lab = plan(inv, fake_secrets)["/etc/nginx/nginx.conf"].content.decode()
    assert "selfsigned.crt" in lab


def test_sizing_from_planner_unless_overridden(inv, fake_secrets):
    prod = plan(inv, fake_secrets, env="prod", host="app1")["/etc/bmms/gunicorn.conf.py"]
    lab = plan(inv, fake_secrets, host="app1")["/etc/bmms/gunicorn.conf.py"]
    assert b"workers = 17" in prod.content and b"workers = 2\n" in lab.content
    pg = plan(inv, fake_secrets, env="prod", host="db1")
    assert b"max_connections = 100" in pg["/etc/postgresql/15/main/conf.d/bmms.conf"].content
    redis = plan(inv, fake_secrets, env="prod", host="cache1")["/etc/redis/bmms.conf"].content
    assert b"maxmemory 6144mb" in redis and b"maxmemory-policy allkeys-lru" in redis


def test_replica_streams_from_primary_with_a_slot(inv, fake_secrets):
    conf = plan(inv, fake_secrets, host="db2")["/etc/postgresql/15/main/conf.d/replication.conf"]
    assert b"host=198.18.0.21" in conf.content and b"primary_slot_name = 'replica_db2'" in conf.content
    primary = plan(inv, fake_secrets, host="db1")["/etc/postgresql/15/main/conf.d/replication.conf"]
    assert b"primary_conninfo =" not in primary.content
    # after a failover to db2, with db1 fenced: db3 follows db2, and db1 is no read replica
    after = plan(inv, fake_secrets, host="db3", db_primary="db2", db_fenced=("db1",))
    assert b"host=198.18.0.22" in after["/etc/postgresql/15/main/conf.d/replication.conf"].content
    ini = plan(inv, fake_secrets, host="cache1", db_primary="db2", db_fenced=("db1",))
    assert b"bmms_ro = host=198.18.0.23 " in ini["/etc/pgbouncer/databases.ini"].content


def test_failover_repoints_pgbouncer(inv, fake_secrets):
    ini = plan(inv, fake_secrets, host="cache1", db_primary="db2")["/etc/pgbouncer/databases.ini"]
    text = ini.content.decode()
    assert "bmms = host=198.18.0.22 " in text and "bmms_ro = host=198.18.0.21,198.18.0.23 " in text


def test_pg_hba_allows_only_hosts_that_need_it(inv, fake_secrets):
    text = plan(inv, fake_secrets, host="db1")["/etc/postgresql/15/main/pg_hba.conf"].content.decode()
    remote = [l for l in text.splitlines() if l.startswith("host") and "/32" in l
              and not l.split()[3].startswith("127.")]
    sources = {l.split()[3] for l in remote}
    # pgbouncer (cache1), replicas (db2, db3), backup+monitoring (mon1): never the app hosts
    assert sources == {"198.18.0.31/32", "198.18.0.22/32", "198.18.0.23/32", "198.18.0.41/32"}
    assert "md5" not in text and "trust" not in text


def test_secrets_only_in_files_marked_secret(inv, fake_secrets):
    values = fake_secrets.values()
    for env in inv.environments.values():
        for hp in render.render_env(env, fake_secrets).values():
            for f in hp.files:
                has = any(v.encode() in f.content for v in values)
                assert has == f.secret or (f.secret and not has), f.path
                if f.secret:
                    assert f.mode & 0o007 == 0, f"{f.path} is readable by others"


def test_handlers(inv, fake_secrets):
    lb = plan(inv, fake_secrets)
    assert lb["/etc/nginx/nginx.conf"].notify == (Handler("reload", "nginx"),)
    sentinel = plan(inv, fake_secrets, host="cache1")["/etc/redis/sentinel.conf"]
    assert sentinel.create_only


def test_strict_undefined_names_host_and_template(inv, fake_secrets, monkeypatch):
    e = inv.env("lab")
    bad = dict(e.app, env={"BROKEN": "{{ no_such_name }}"})
    import dataclasses
    e2 = dataclasses.replace(e, app=bad)
    with pytest.raises(RenderError) as exc:
        render.render_host(e2, e2.host("app1"), fake_secrets)
    assert "app1" in str(exc.value) and "app.env.BROKEN" in str(exc.value)
    assert "no_such_name" in str(exc.value)


def test_app_env_file_quotes_values(inv, fake_secrets):
    env = plan(inv, fake_secrets, host="app2")["/etc/bmms/app.env"].content.decode()
    assert 'REDIS_SENTINELS="198.18.0.22,198.18.0.23,198.18.0.31"' in env
    assert 'DATABASE_URL="postgres://bmms:' in env and '@198.18.0.31:6432/bmms"' in env
