"""nginx -t on the rendered load balancer config of every environment."""

import subprocess

import pytest

from bmms_fab import render
from bmms_fab.roles import lb
from tests.checkers import sandbox
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.checker


def nginx_test(env, fake_secrets, tmp_path, edit=lambda text: text):
    """Render the LB's nginx.conf, put it at /etc/nginx with a certificate where it expects one,
    and run `nginx -t` on it."""
    need_root(); need_tool("nginx", "openssl", "unshare")
    lb_host = env.with_role("lb")[0]
    files = render.render_host(env, lb_host, fake_secrets).files
    conf = sandbox.write_files(tmp_path / "nginx", files, "/etc/nginx")
    (conf / "nginx.conf").write_text(edit((conf / "nginx.conf").read_text()))
    (conf / "mime.types").write_bytes(open("/etc/nginx/mime.types", "rb").read())
    ssl = tmp_path / "ssl"; ssl.mkdir()
    cert, key = lb.tls_paths(render.Context(env, lb_host, fake_secrets))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=test", "-keyout", str(ssl / key.rsplit("/", 1)[1]),
                    "-out", str(ssl / cert.rsplit("/", 1)[1])], check=True, capture_output=True)
    return sandbox.run("nginx -t -c /etc/nginx/nginx.conf",
                       binds={"/etc/nginx": conf, "/etc/ssl/bmms": ssl})


@pytest.mark.parametrize("env_name", ["lab", "prod"])
def test_nginx_accepts_rendered_config(env_name, inv, fake_secrets, tmp_path):
    r = nginx_test(inv.env(env_name), fake_secrets, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr


def test_nginx_rejects_a_broken_config(inv, fake_secrets, tmp_path):
    """The checker really checks: the same config with one typo fails."""
    r = nginx_test(inv.env("lab"), fake_secrets, tmp_path,
                   edit=lambda t: t.replace("least_conn;", "least_con;"))
    assert r.returncode != 0 and 'unknown directive "least_con"' in r.stderr
