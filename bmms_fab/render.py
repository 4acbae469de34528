"""Render every file a host needs from templates (Jinja2, StrictUndefined). Pure: no I/O but
reading templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import jinja2

from . import SYSTEMD_DIR, TEMPLATES_DIR, capacity
from .errors import RenderError
from .inventory import Environment, Host
from .plan import HostPlan, ManagedFile
from .secrets import Secrets

COLORS = {"blue": 8001, "green": 8002}
PG_VERSION = 15
PG_CONF_DIR = f"/etc/postgresql/{PG_VERSION}/main"
PG_DATA_DIR = f"/var/lib/postgresql/{PG_VERSION}/main"
APP_ROOT = "/srv/bmms"
PORTS = {
    "ssh": 22, "http": 80, "https": 443, "postgres": 5432, "pgbouncer": 6432, "redis": 6379,
    "sentinel": 26379, "node_exporter": 9100, "postgres_exporter": 9187,
    "redis_exporter": 9121, "pgbouncer_exporter": 9127, "nginx_exporter": 9113,
    "prometheus": 9090, "grafana": 3000, "nginx_status": 8080,
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(TEMPLATES_DIR), str(SYSTEMD_DIR)]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True, autoescape=False)
    return env


JINJA = _environment()


def sizing(env: Environment) -> dict:
    """Scale-dependent vars: the capacity plan, overridden by the inventory's non-null vars."""
    values = capacity.sizing_vars(capacity.plan(env.capacity["moas"], env.capacity["users"]))
    values.update({k: v for k, v in env.vars.items() if v is not None})
    return values


@dataclass
class Context:
    """Everything a role needs to render one host's files."""

    env: Environment
    host: Host
    secrets: Secrets
    active_colors: dict[str, str] = field(default_factory=dict)   # web host -> live colour
    db_primary: str | None = None      # override of the primary (after a failover)
    db_fenced: tuple = ()              # old primaries fenced by a failover, not yet rejoined

    @cached_property
    def vars(self) -> dict:
        return sizing(self.env)

    @property
    def primary(self) -> Host:
        if self.db_primary:
            return self.env.host(self.db_primary)
        return self.env.one("db_primary")

    def base(self) -> dict:
        """Names every template may use."""
        e = self.env
        sentinels = e.with_role("sentinel")
        return {
            "env": e, "host": self.host, "domain": e.domain, "vars": self.vars,
            "ports": PORTS, "colors": COLORS, "app": e.app or {},
            "secret": self.secrets.__getitem__,
            "hosts": e.hosts, "role": e.with_role,
            "primary": self.primary,
            "replicas": [h for h in e.hosts if (h.has("db_replica") or h.has("db_primary"))
                         and h.name != self.primary.name and h.name not in self.db_fenced],
            "pgbouncer": (e.with_role("pgbouncer") or [None])[0],
            "redis_master": (e.with_role("redis_master") or [None])[0],
            "sentinels": sentinels,
            "monitoring": e.with_role("monitoring"),
            "web_nodes": [(h, self.active_colors.get(h.name, "blue")) for h in e.with_role("web")],
            "pg_version": PG_VERSION, "pg_conf_dir": PG_CONF_DIR, "pg_data_dir": PG_DATA_DIR,
            "app_root": APP_ROOT,
        }

    def render(self, template: str, **extra) -> bytes:
        try:
            text = JINJA.get_template(template).render(**self.base(), **extra)
        except jinja2.TemplateError as exc:
            where = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
            raise RenderError(self.host.name, template + where, str(exc)) from None
        return text.encode()

    def render_string(self, text: str, what: str, **extra) -> str:
        try:
            return JINJA.from_string(text).render(**self.base(), **extra)
        except jinja2.TemplateError as exc:
            raise RenderError(self.host.name, what, str(exc)) from None

    def file(self, path: str, template: str, **kw) -> ManagedFile:
        extra = kw.pop("context", {})
        return ManagedFile(path=path, content=self.render(template, **extra), **kw)


def render_host(env: Environment, host: Host, secrets: Secrets,
                active_colors: dict[str, str] | None = None,
                db_primary: str | None = None, db_fenced: tuple = ()) -> HostPlan:
    """All files `host` needs, from its roles."""
    from .roles import files_for   # roles import this module
    ctx = Context(env, host, secrets, dict(active_colors or {}), db_primary, tuple(db_fenced))
    files = files_for(ctx)
    seen: dict[str, str] = {}
    for f in files:
        if f.path in seen:
            raise RenderError(host.name, f.path, "two roles want to write this file")
        seen[f.path] = f.path
    return HostPlan(host=host.name, files=tuple(files))


def render_env(env: Environment, secrets: Secrets, **kw) -> dict[str, HostPlan]:
    return {h.name: render_host(env, h, secrets, **kw) for h in env.hosts}


def write_tree(plans: dict[str, HostPlan], out: Path) -> list[Path]:
    """Write every host's files under out/<host>/<absolute path>, for review."""
    written = []
    for name, plan in plans.items():
        for f in plan.files:
            target = out / name / f.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.content)
            target.chmod(f.mode & 0o777 if not f.secret else 0o600)
            written.append(target)
    return written
