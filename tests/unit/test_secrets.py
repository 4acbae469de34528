import os

import pytest

from bmms_fab import inventory, secrets
from bmms_fab.errors import SecretsError

from tests.unit.test_inventory import BASE


@pytest.fixture
def env(tmp_path):
    text = BASE.replace("    domain: t.example.org\n", "    domain: t.example.org\n    secrets_file: s.yml\n")
    return inventory.parse(text, tmp_path / "hosts.yml").env("t")


def test_init_generates_every_secret_mode_0600(env, tmp_path):
    path, added = secrets.init(env)
    assert path == tmp_path / "s.yml" and set(added) == set(secrets.SECRETS)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = secrets.load(env, environ={})
    values = [loaded[n] for n in secrets.SECRETS]
    assert len(set(values)) == len(values) and all(len(v) >= 40 for v in values)


def test_init_keeps_existing_values(env):
    secrets.init(env)
    before = secrets.load(env, environ={})["redis_password"]
    path, added = secrets.init(env)
    assert added == [] and secrets.load(env, environ={})["redis_password"] == before


def test_refuses_group_readable_file(env, tmp_path):
    secrets.init(env)
    os.chmod(tmp_path / "s.yml", 0o640)
    with pytest.raises(SecretsError) as exc:
        secrets.load(env, environ={})
    assert "readable by group or others" in str(exc.value) and "chmod 600" in str(exc.value)


def test_missing_secret_is_named_without_values(env):
    s = secrets.load(env, environ={"BMMS_SECRET_REDIS_PASSWORD": "from-env-123"})
    assert s["redis_password"] == "from-env-123"
    with pytest.raises(SecretsError) as exc:
        s["db_app_password"]
    assert "db_app_password" in str(exc.value) and "BMMS_SECRET_DB_APP_PASSWORD" in str(exc.value)


def test_unknown_secret_name_in_file(env, tmp_path):
    p = tmp_path / "s.yml"
    p.write_text("redis_pasword: x\n")
    os.chmod(p, 0o600)
    with pytest.raises(SecretsError) as exc:
        secrets.load(env, environ={})
    assert "redis_pasword" in str(exc.value)


def test_secrets_never_print_and_mask_text(env):
    secrets.init(env)
    s = secrets.load(env, environ={})
    value = s["sentinel_password"]
    assert value not in repr(s) and value not in str(s)
    assert s.mask(f"pw={value};") == "pw=********;"
