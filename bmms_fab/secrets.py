"""Secrets: read from a per-environment file outside git (mode 0600) or BMMS_SECRET_* variables.

Values never go into hosts.yml, argv or logs. `Secrets` masks itself when printed, and
`mask()` replaces every known value in a text before it is shown.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
from pathlib import Path

import yaml

from .errors import SecretsError
from .inventory import Environment

# name -> what it is for (every secret the stack needs)
SECRETS = {
    "django_secret_key": "Django SECRET_KEY",
    "db_app_password": "PostgreSQL role 'bmms' (the app, through PgBouncer)",
    "db_replication_password": "PostgreSQL role 'replicator' (streaming replicas)",
    "db_monitor_password": "PostgreSQL role 'bmms_monitor' (postgres/pgbouncer exporters)",
    "db_backup_password": "PostgreSQL role 'bmms_backup' (pg_dump)",
    "pgbouncer_admin_password": "PgBouncer admin console user 'pgbouncer_admin'",
    "redis_password": "Redis AUTH (master and replicas)",
    "sentinel_password": "Sentinel AUTH",
    "grafana_admin_password": "Grafana 'admin' user",
}

ENV_PREFIX = "BMMS_SECRET_"


def secrets_path(env: Environment) -> Path:
    if env.secrets_file:
        p = Path(env.secrets_file).expanduser()
        return p if p.is_absolute() else env.base_dir / p
    return Path(f"~/.config/bmms-fab/secrets/{env.name}.yml").expanduser()


class Secrets:
    """Read-only secret values for one environment."""

    def __init__(self, values: dict[str, str], origin: str):
        self._values = dict(values)
        self.origin = origin

    def __getitem__(self, name: str) -> str:
        if name not in SECRETS:
            raise SecretsError(f"unknown secret {name!r} (known: {', '.join(SECRETS)})")
        if name not in self._values:
            raise SecretsError(
                f"secret {name!r} ({SECRETS[name]}) is missing from {self.origin}; "
                f"run `inv secrets.init` or set {ENV_PREFIX}{name.upper()}")
        return self._values[name]

    def values(self) -> list[str]:
        return [v for v in self._values.values() if v]

    def mask(self, text: str) -> str:
        for value in sorted(self.values(), key=len, reverse=True):
            text = text.replace(value, "********")
        return text

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} values from {self.origin})"

    __str__ = __repr__


def _check_file_mode(path: Path) -> None:
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(f"{path} is readable by group or others (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`")


def load(env: Environment, environ: dict | None = None) -> Secrets:
    """Secrets for `env`: the file (if any), then BMMS_SECRET_<NAME> variables on top."""
    environ = os.environ if environ is None else environ
    path = secrets_path(env)
    values: dict[str, str] = {}
    if path.exists():
        _check_file_mode(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SecretsError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise SecretsError(f"{path}: expected a mapping of secret name to value")
        unknown = sorted(set(data) - set(SECRETS))
        if unknown:
            raise SecretsError(f"{path}: unknown secret name(s): {', '.join(map(str, unknown))}")
        for k, v in data.items():
            if not isinstance(v, str) or not v:
                raise SecretsError(f"{path}: secret {k!r} must be a non-empty string")
        values.update(data)
    for name in SECRETS:
        v = environ.get(ENV_PREFIX + name.upper())
        if v:
            values[name] = v
    return Secrets(values, f"{path} / {ENV_PREFIX}* variables")


def generate_value(name: str) -> str:
    """A strong random value; URL/ini/shell safe (no quotes, no '@' or ':')."""
    return _random.token_urlsafe(48 if name == "django_secret_key" else 32)


def init(env: Environment) -> tuple[Path, list[str]]:
    """Create or complete the secrets file with random values. Existing values are kept."""
    path = secrets_path(env)
    existing: dict[str, str] = {}
    if path.exists():
        _check_file_mode(path)
        existing = yaml.safe_load(path.read_text()) or {}
    added = [n for n in SECRETS if n not in existing]
    if not added:
        return path, []
    data = {**existing, **{n: generate_value(n) for n in added}}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# bmms-fab secrets for environment '{env.name}'. Keep out of git. Mode 0600.\n")
        yaml.safe_dump(data, fh, default_flow_style=False)
    os.replace(tmp, path)
    return path, added
