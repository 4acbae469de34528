"""redis-server, redis-sentinel, pgbouncer and PostgreSQL started with their rendered config,
unchanged, at its real path, listening on the host's own address (on a private loopback), and
answering an authenticated request, and refusing an unauthenticated one."""

import pytest

from bmms_fab import render
from tests.checkers import sandbox
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.checker

WAIT_PORT = """wait_port() {{ for i in $(seq 100); do (exec 3<>/dev/tcp/$1/$2) 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1:$2" >&2; return 1; }}
"""


def host_files(inv, fake_secrets, env_name, host_name):
    env = inv.env(env_name)
    host = env.host(host_name)
    return host, render.render_host(env, host, fake_secrets).files


def redis_dirs(tmp_path):
    dirs = {d: tmp_path / d.strip("/").replace("/", "_") for d in
            ("/var/lib/redis", "/var/log/redis", "/run/redis", "/run/sentinel")}
    for p in dirs.values():
        p.mkdir(parents=True, exist_ok=True)
    return dirs


@pytest.mark.parametrize("host_name", ["cache1", "db2"])   # master, replica
def test_redis_starts_with_rendered_config_and_requires_auth(host_name, inv, fake_secrets, tmp_path):
    need_root(); need_tool("redis-server", "redis-cli", "unshare")
    host, files = host_files(inv, fake_secrets, "lab", host_name)
    etc = sandbox.write_files(tmp_path / "etc", files, "/etc/redis")
    (etc / "sentinel.conf").unlink()
    pw = fake_secrets["redis_password"]
    script = WAIT_PORT.format() + f"""
redis-server /etc/redis/redis.conf --supervised no --daemonize yes
wait_port {host.address} 6379
cli() {{ REDISCLI_AUTH="$PW" redis-cli -h {host.address} "$@"; }}
echo "auth-ping: $(cli PING)"
echo "noauth: $(redis-cli -h {host.address} PING 2>&1)"
echo "policy: $(cli CONFIG GET maxmemory-policy | tail -1)"
echo "aof: $(cli CONFIG GET appendonly | tail -1)"
echo "flushall: $(cli FLUSHALL 2>&1)"
echo "role: $(cli ROLE | head -1)"
cli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
"""
    r = sandbox.run(f"export PW='{pw}'\n" + script, binds={"/etc/redis": etc, **redis_dirs(tmp_path)},
                    addresses=(host.address,))
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "auth-ping: PONG" in out
    assert "noauth: NOAUTH Authentication required" in out
    assert "policy: allkeys-lru" in out and "aof: yes" in out
    assert "unknown command" in out.split("flushall:")[1].splitlines()[0]
    expected_role = "master" if host.has("redis_master") else "slave"
    assert f"role: {expected_role}" in out
    assert pw not in r.stderr


def test_sentinel_starts_with_rendered_config(inv, fake_secrets, tmp_path):
    need_root(); need_tool("redis-sentinel", "redis-cli", "unshare")
    env = inv.env("lab")
    host, files = host_files(inv, fake_secrets, "lab", "db2")
    etc = sandbox.write_files(tmp_path / "etc", files, "/etc/redis")
    master = env.one("redis_master")
    script = WAIT_PORT.format() + f"""
redis-sentinel /etc/redis/sentinel.conf --daemonize yes --supervised no
wait_port {host.address} 26379
cli() {{ REDISCLI_AUTH="$PW" redis-cli -h {host.address} -p 26379 "$@"; }}
echo "master: $(cli SENTINEL get-master-addr-by-name bmms | tr '\\n' ' ')"
echo "noauth: $(redis-cli -h {host.address} -p 26379 PING 2>&1)"
cli SENTINEL master bmms | paste - - | grep -E '^(quorum|down-after-milliseconds|failover-timeout|parallel-syncs)\\s' | sed 's/^/conf: /'
cli SHUTDOWN NOSAVE >/dev/null 2>&1 || kill $(cat /run/sentinel/redis-sentinel.pid) || true
"""
    r = sandbox.run(f"export PW='{fake_secrets['sentinel_password']}'\n" + script,
                    binds={"/etc/redis": etc, **redis_dirs(tmp_path)}, addresses=(host.address,))
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert f"master: {master.address} 6379" in out
    assert "noauth: NOAUTH" in out
    for line in ("quorum\t2", "down-after-milliseconds\t5000", "failover-timeout\t180000",
                 "parallel-syncs\t1"):
        assert f"conf: {line}" in out, out


def test_pgbouncer_starts_with_rendered_config(inv, fake_secrets, tmp_path):
    need_root(); need_tool("pgbouncer", "psql", "unshare")
    host, files = host_files(inv, fake_secrets, "lab", "cache1")
    etc = sandbox.write_files(tmp_path / "etc", files, "/etc/pgbouncer")
    run_dir, log_dir = tmp_path / "run", tmp_path / "log"
    for d in (run_dir, log_dir):
        d.mkdir()
    script = WAIT_PORT.format() + f"""
chown -R postgres: {run_dir} {log_dir} {etc}
pgbouncer -d -u postgres /etc/pgbouncer/pgbouncer.ini
wait_port {host.address} 6432
q() {{ psql "host={host.address} port=6432 user=bmms_monitor dbname=pgbouncer" -At -c "$1"; }}
PGPASSWORD="$PW" q "SHOW CONFIG" | grep -E '^(auth_type|pool_mode|max_client_conn|default_pool_size)\\|' | cut -d'|' -f1,2 | sed 's/^/conf: /'
PGPASSWORD="$PW" q "SHOW DATABASES" | cut -d'|' -f1,2 | sed 's/^/db: /'
echo "wrong: $(PGPASSWORD=wrong q 'SHOW VERSION' 2>&1)"
kill $(cat /var/run/postgresql/pgbouncer.pid)
"""
    r = sandbox.run(f"export PW='{fake_secrets['db_monitor_password']}'\n" + script,
                    binds={"/etc/pgbouncer": etc, "/var/run/postgresql": run_dir,
                           "/var/log/postgresql": log_dir}, addresses=(host.address,))
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    for line in ("auth_type|scram-sha-256", "pool_mode|transaction", "max_client_conn|400",
                 "default_pool_size|20"):
        assert f"conf: {line}" in out, out
    assert "db: bmms|198.18.0.21" in out and "db: bmms_ro|198.18.0.22,198.18.0.23" in out
    assert "SASL authentication failed" in out.split("wrong:")[1]


@pytest.fixture
def postgres_tmp():
    """A scratch directory the postgres user can reach (pytest's own is root-only)."""
    import pathlib, shutil, tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="bmms-pg-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("host_name", ["db1", "db2"])
def test_postgres_starts_with_rendered_config(host_name, inv, fake_secrets, postgres_tmp):
    """The rendered conf.d/bmms.conf and pg_hba.conf in a fresh cluster: the server starts,
    scram logins work from allowed sources, and the app role is refused from anywhere but
    PgBouncer's host."""
    need_root(); need_tool("psql", "unshare")
    bindir = "/usr/lib/postgresql/15/bin"
    if not __import__("os").path.exists(f"{bindir}/postgres"):
        need_tool("postgres-15-server")   # skip/fail with a clear reason
    tmp_path = postgres_tmp
    host, files = host_files(inv, fake_secrets, "lab", host_name)
    by = {f.path: f for f in files}
    data = tmp_path / "data"
    conf = by["/etc/postgresql/15/main/conf.d/bmms.conf"].content.decode()
    script = WAIT_PORT.format() + f"""
chown postgres: {tmp_path}
runuser -u postgres -- {bindir}/initdb -D {data} -A peer --auth-host=scram-sha-256 >/dev/null
mkdir {data}/conf.d
cat > {data}/conf.d/bmms.conf <<'BMMS_EOF'
{conf}
BMMS_EOF
cp {tmp_path}/pg_hba.conf {data}/pg_hba.conf
echo "include_dir = 'conf.d'" >> {data}/postgresql.conf
mkdir -p {tmp_path}/sock && chown -R postgres: {data} {tmp_path}/sock
runuser -u postgres -- {bindir}/pg_ctl -D {data} -o "-k {tmp_path}/sock" -l {tmp_path}/pg.log -w start >/dev/null
runuser -u postgres -- psql -h {tmp_path}/sock -Atc "CREATE ROLE bmms LOGIN PASSWORD '$PW'" >/dev/null
runuser -u postgres -- psql -h {tmp_path}/sock -Atc "SHOW max_connections; SHOW password_encryption; SHOW wal_level" | sed 's/^/show: /'
echo "local: $(PGPASSWORD=$PW psql 'host=127.0.0.1 user=bmms dbname=postgres' -Atc 'select 1' 2>&1)"
echo "own-address: $(PGPASSWORD=$PW psql 'host={host.address} user=bmms dbname=bmms' -Atc 'select 1' 2>&1)"
runuser -u postgres -- {bindir}/pg_ctl -D {data} -m fast stop >/dev/null
"""
    (tmp_path / "pg_hba.conf").write_bytes(by["/etc/postgresql/15/main/pg_hba.conf"].content)
    r = sandbox.run(f"export PW='{fake_secrets['db_app_password']}'\n" + script,
                    addresses=(host.address,), timeout=120)
    out = r.stdout
    log = tmp_path / "pg.log"
    assert r.returncode == 0, out + r.stderr + (log.read_text() if log.exists() else "")
    assert "show: 100" in out and "show: scram-sha-256" in out and "show: replica" in out
    assert "local: 1" in out
    assert "no pg_hba.conf entry" in out.split("own-address:")[1]
