"""Tasks validate the inventory before connecting: exit 2 and not one connection attempt."""

import os
import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT

BROKEN = """\
environments:
  t:
    domain: t.example.org
    ssh: {{port: {port}, known_hosts: {kh}}}
    hosts:
      - {{name: h1, address: 127.0.0.1, roles: [web, db_primary, pgbouncer, redis_master, sentinel]}}
      - {{name: h2, address: 127.0.0.2, roles: [sentinel], bogus: 1}}
      - {{name: h3, address: 127.0.0.3, roles: [sentinel]}}
"""


@pytest.fixture
def listener():
    """A TCP listener standing in for every host's sshd: it counts connection attempts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    count, stop = [0], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                count[0] += 1
                conn.close()
            except socket.timeout:
                pass
    th = threading.Thread(target=accept, daemon=True)
    th.start()
    yield srv.getsockname()[1], count
    stop.set(); th.join(); srv.close()


def inv(args, inventory, **kw):
    env = dict(os.environ, BMMS_INVENTORY=str(inventory))
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.parametrize("task", [["configure", "--hosts", "t"], ["trust", "--hosts", "t", "--yes"],
                                  ["check", "--hosts", "t"]])
def test_invalid_inventory_exits_2_without_connecting(task, listener, tmp_path):
    port, count = listener
    f = tmp_path / "hosts.yml"
    f.write_text(BROKEN.format(port=port, kh=tmp_path / "kh"))
    r = inv(task, f)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{f}:7: environments.t.hosts[1].bogus: unknown key" in r.stderr
    assert "app" in r.stderr   # the missing app section is reported too
    assert count[0] == 0


def test_the_listener_does_count(listener, tmp_path):
    """The same inventory made valid does connect: the zero above is meaningful."""
    port, count = listener
    f = tmp_path / "hosts.yml"
    text = BROKEN.format(port=port, kh=tmp_path / "kh").replace(", bogus: 1", "")
    text = text.replace("    hosts:", "    app: {path: a, settings_module: s, wsgi_app: w, celery_app: c}\n    hosts:")
    f.write_text(text)
    r = inv(["trust", "--hosts", "t", "--yes"], f)
    assert r.returncode != 0 and count[0] >= 1


def test_capacity_bad_arguments_exit_2(tmp_path):
    r = inv(["capacity", "--users", "0"], ROOT / "hosts.yml")
    assert r.returncode == 2 and "--users must be a whole number of at least 1" in r.stderr


def test_promote_to_a_host_that_is_not_a_database_fails_before_connecting(listener, tmp_path):
    """A bad --to changes nothing and opens no connection."""
    import textwrap
    port, count = listener
    f = tmp_path / "hosts.yml"
    f.write_text(textwrap.dedent(f"""\
        environments:
          t:
            domain: t.example.org
            ssh: {{port: {port}, known_hosts: {tmp_path / 'kh'}}}
            app: {{path: a, settings_module: s, wsgi_app: w, celery_app: c}}
            hosts:
              - {{name: h1, address: 127.0.0.1, roles: [web, db_primary, pgbouncer, redis_master, sentinel]}}
              - {{name: h2, address: 127.0.0.2, roles: [db_replica, sentinel]}}
              - {{name: h3, address: 127.0.0.3, roles: [sentinel, lb]}}
        """))
    (tmp_path / "secrets").mkdir()
    env = dict(os.environ, BMMS_INVENTORY=str(f), HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "invoke", "db.promote", "--hosts", "t", "--to", "h3"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--to h3: not a database host of t (h1, h2)" in r.stderr, r.stderr
    assert count[0] == 0
