"""Read and validate hosts.yml into typed objects. Nothing here opens a connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import yaml

from . import schema as s
from .errors import InventoryError, Problem
from .schema import Field
from .yamlsrc import LineDict, load_text, line_of

ROLES = ("lb", "web", "worker", "beat", "db_primary", "db_replica", "pgbouncer",
         "redis_master", "redis_replica", "sentinel", "monitoring", "backup")

# role -> roles that must exist somewhere in the same environment
NEEDS = {
    "lb": ("web",),
    "web": ("db_primary", "pgbouncer", "redis_master", "sentinel"),
    "worker": ("db_primary", "pgbouncer", "redis_master", "sentinel"),
    "beat": ("worker",),
    "db_replica": ("db_primary",),
    "pgbouncer": ("db_primary",),
    "redis_replica": ("redis_master",),
    "sentinel": ("redis_master",),
    "backup": ("db_primary",),
}

# Scale-dependent values: None means "from the capacity planner".
VARS = {
    "gunicorn_workers": Field("int", check=s.positive, doc="gunicorn worker processes per app host"),
    "gunicorn_threads": Field("int", check=s.positive),
    "gunicorn_timeout": Field("int", default=60, check=s.positive),
    "celery_concurrency": Field("int", check=s.positive),
    "pg_max_connections": Field("int", check=s.positive),
    "pg_shared_buffers_mb": Field("int", check=s.positive),
    "pg_effective_cache_size_mb": Field("int", check=s.positive),
    "pg_work_mem_mb": Field("int", check=s.positive),
    "pgbouncer_max_client_conn": Field("int", check=s.positive),
    "pgbouncer_pool_size": Field("int", check=s.positive),
    "redis_maxmemory_mb": Field("int", check=s.positive),
    "sentinel_quorum": Field("int", default=2, check=s.positive),
    "sentinel_down_after_ms": Field("int", default=5000, check=s.positive),
    "sentinel_failover_timeout_ms": Field("int", default=180000, check=s.positive),
    "upload_max_mb": Field("int", default=100, check=s.positive),
    "rate_limit_api_per_min": Field("int", default=100, check=s.positive),
    "rate_limit_login_per_min": Field("int", default=5, check=s.positive),
    "firewall": Field("bool", default=True, doc="nftables rules per role on every host"),
    "backup_dir": Field("str", default="/var/backups/bmms"),
    "backup_retention_days": Field("int", default=30, check=s.positive),
    "backup_min_keep": Field("int", default=7, check=s.positive),
    "backup_schedule": Field("str", default="15 2 * * *", doc="cron schedule of `inv backup`"),
}

SSH = {
    "user": Field("str", default="root"),
    "port": Field("int", default=22, check=s.port),
    "identity_file": Field("str", doc="private key; default: ssh-agent / ~/.ssh"),
    "known_hosts": Field("str", default="~/.config/bmms-fab/known_hosts"),
    "connect_timeout": Field("int", default=10, check=s.positive),
    "parallel": Field("int", default=16, check=s.positive, doc="hosts worked on at once"),
}

APP = {
    "name": Field("str", default="bmms"),
    "path": Field("str", doc="local source directory (relative to hosts.yml)"),
    "git": Field("str", doc="VCS URL"),
    "revision": Field("str", doc="VCS revision to deploy"),
    "requirements": Field("str", default="requirements.txt"),
    "manage_dir": Field("str", default="."),
    "settings_module": Field("str", required=True),
    "wsgi_app": Field("str", required=True),
    "celery_app": Field("str", required=True),
    "env": Field("map", default={}, values=Field("str")),
    "health": Field("map", default={"path": "/health/", "ready_path": "/ready/",
                                    "host_header": None, "timeout": 5, "passes": 3,
                                    "start_timeout": 120, "drain_timeout": 30},
                    fields={"path": Field("str", default="/health/"),
                            "ready_path": Field("str", default="/ready/"),
                            "host_header": Field("str", doc="Host header of health checks "
                                                 "(must be in ALLOWED_HOSTS)"),
                            "timeout": Field("int", default=5, check=s.positive,
                                             doc="seconds per check request"),
                            "passes": Field("int", default=3, check=s.positive,
                                            doc="checks in a row that must pass"),
                            "start_timeout": Field("int", default=120, check=s.positive,
                                                   doc="seconds a new colour has to pass"),
                            "drain_timeout": Field("int", default=30, check=s.positive,
                                                   doc="seconds to wait for in-flight requests")}),
    "keep_releases": Field("int", default=5, check=s.positive),
}

HOST = {
    "name": Field("str", required=True, check=s.host_name),
    "address": Field("str", required=True, check=s.address),
    "port": Field("int", check=s.port, doc="SSH port; default from ssh.port"),
    "user": Field("str", doc="SSH user; default from ssh.user"),
    "roles": Field("list", required=True, values=Field("str", check=s.one_of(*ROLES))),
    "cores": Field("int", check=s.positive, doc="CPU cores, for sizing; default from capacity"),
    "memory_mb": Field("int", check=s.positive),
}

ENVIRONMENT = {
    "description": Field("str", default=""),
    "domain": Field("str", required=True, check=s.address),
    "ssh": Field("map", default={}, fields=SSH),
    "control_address": Field("str", check=s.ip_address,
                             doc="address the operator connects from (firewall SSH rule)"),
    "apt_proxy": Field("str", check=s.url, doc="http proxy for apt, e.g. apt-cacher-ng"),
    "secrets_file": Field("str", doc="default ~/.config/bmms-fab/secrets/<env>.yml"),
    "tls": Field("map", default={}, fields={
        "certificate": Field("str", doc="PEM certificate chain on the control machine"),
        "key": Field("str")}),
    "capacity": Field("map", default={"moas": 44, "users": 1000}, fields={
        "moas": Field("int", default=44, check=s.positive),
        "users": Field("int", default=1000, check=s.positive)}),
    "vars": Field("map", default={}, fields=VARS),
    "app": Field("map", fields=APP),
    "hosts": Field("list", required=True, values=Field("map", fields=HOST)),
}

DOCUMENT = Field("map", extensions=True, fields={
    "environments": Field("map", required=True, values=Field("map", fields=ENVIRONMENT)),
})


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int
    user: str
    roles: tuple[str, ...]
    cores: int | None = None
    memory_mb: int | None = None

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Environment:
    name: str
    source: Path
    domain: str
    hosts: tuple[Host, ...]
    ssh: dict
    vars: dict
    capacity: dict
    tls: dict
    app: dict | None
    apt_proxy: str | None = None
    control_address: str | None = None
    secrets_file: str | None = None
    description: str = ""

    def with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts if role in h.roles]

    def one(self, role: str) -> Host:
        hosts = self.with_role(role)
        if len(hosts) != 1:
            raise LookupError(f"{self.name}: expected exactly one host with role {role}")
        return hosts[0]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def base_dir(self) -> Path:
        return self.source.parent


@dataclass(frozen=True)
class Inventory:
    source: Path
    environments: dict[str, Environment] = field(default_factory=dict)

    def env(self, name: str) -> Environment:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none"
            raise InventoryError([Problem(str(self.source), None, f"environments.{name}",
                                          f"no such environment (defined: {known})")])
        return self.environments[name]


def _topology_problems(env: dict, path: str, src: str) -> list[Problem]:
    """Rules across hosts: counts, uniqueness, and roles that need each other."""
    problems: list[Problem] = []
    hosts = env.get("hosts") or []

    def p(msg: str, at: str = "hosts", line: int | None = None) -> None:
        problems.append(Problem(src, line or line_of(env, "hosts"), f"{path}.{at}", msg))

    seen_names: dict[str, int] = {}
    seen_addrs: dict[str, int] = {}
    by_role: dict[str, list[str]] = {r: [] for r in ROLES}
    for i, h in enumerate(hosts):
        if not isinstance(h, dict):
            continue
        hline = line_of(hosts, i)
        for key, seen in (("name", seen_names), ("address", seen_addrs)):
            v = h.get(key)
            if v is None:
                continue
            if v in seen:
                p(f"duplicate {key} {v!r} (also hosts[{seen[v]}])", f"hosts[{i}].{key}",
                  line_of(h, key))
            else:
                seen[v] = i
        roles = h.get("roles") or []
        if isinstance(roles, list):
            if not roles:
                p("a host needs at least one role", f"hosts[{i}].roles", hline)
            dup = {r for r in roles if roles.count(r) > 1}
            if dup:
                p(f"role listed twice: {', '.join(sorted(map(str, dup)))}",
                  f"hosts[{i}].roles", line_of(h, "roles"))
            for r in set(roles):
                if r in by_role:
                    by_role[r].append(h.get("name") or f"hosts[{i}]")

    def count_rule(role: str, ok: bool, expected: str) -> None:
        if not ok:
            found = by_role[role]
            p(f"expected {expected} host with role '{role}', found {len(found)}"
              + (f" ({', '.join(found)})" if found else ""))

    count_rule("db_primary", len(by_role["db_primary"]) == 1, "exactly one")
    count_rule("web", len(by_role["web"]) >= 1, "at least one")
    count_rule("beat", len(by_role["beat"]) <= 1, "at most one (beat is a singleton)")
    count_rule("redis_master", len(by_role["redis_master"]) <= 1, "at most one")
    for h in hosts:
        if isinstance(h, dict) and isinstance(h.get("roles"), list):
            r = h["roles"]
            if "db_primary" in r and "db_replica" in r or \
               "redis_master" in r and "redis_replica" in r:
                p(f"host {h.get('name')!r} cannot be both primary and replica of the same store")

    sentinels = len(by_role["sentinel"])
    if sentinels:
        if sentinels < 3 or sentinels % 2 == 0:
            p(f"expected an odd number of Sentinels, at least 3, on distinct hosts; "
              f"found {sentinels} ({', '.join(by_role['sentinel'])})")
        quorum = (env.get("vars") or {}).get("sentinel_quorum") or VARS["sentinel_quorum"].default
        if isinstance(quorum, int) and quorum > sentinels:
            problems.append(Problem(src, line_of(env.get("vars") or env, "sentinel_quorum"),
                                    f"{path}.vars.sentinel_quorum",
                                    f"quorum {quorum} is more than the {sentinels} Sentinels"))
    for role, needs in NEEDS.items():
        if not by_role[role]:
            continue
        for need in needs:
            if not by_role[need]:
                p(f"role '{role}' (on {', '.join(by_role[role])}) needs a host with role "
                  f"'{need}', found none")

    app = env.get("app")
    if isinstance(app, dict):
        if bool(app.get("path")) == bool(app.get("git")):
            problems.append(Problem(src, line_of(env, "app"), f"{path}.app",
                                    "expected exactly one of 'path' (local source) or 'git'"))
        for key in (app.get("env") or {}):
            msg = s.env_name(key) if isinstance(key, str) else "not a string"
            if msg:
                problems.append(Problem(src, line_of(app["env"], key), f"{path}.app.env.{key}",
                                        msg))
    elif by_role["web"] or by_role["worker"]:
        p("hosts with role 'web' or 'worker' need an 'app' section", "app",
          line_of(env, "hosts"))
    return problems


def parse(text: str, source: Path) -> Inventory:
    """Validate inventory text; raise InventoryError listing every problem found."""
    src = str(source)
    try:
        doc = load_text(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        raise InventoryError([Problem(src, line, "(document)", f"not valid YAML: {exc}")]) \
            from None
    if not isinstance(doc, dict):
        raise InventoryError([Problem(src, 1, "(document)",
                                      "expected a mapping with key 'environments'")])
    problems: list[Problem] = []
    doc = s.validate(doc, DOCUMENT, "", src, doc.line if isinstance(doc, LineDict) else 1,
                     problems)
    problems = [Problem(p_.source, p_.line, p_.path.lstrip("."), p_.message) for p_ in problems]
    envs_raw = doc.get("environments") or {}
    for name, env in envs_raw.items():
        if isinstance(env, dict):
            problems += _topology_problems(env, f"environments.{name}", src)
            if s.host_name(name):
                problems.append(Problem(src, line_of(envs_raw, name), f"environments.{name}",
                                        "environment names use lowercase letters, digits, '-'"))
    if problems:
        raise InventoryError(sorted(problems, key=lambda p_: (p_.line or 0, p_.path)))
    environments = {}
    for name, env in envs_raw.items():
        ssh = env["ssh"] or {}
        ssh = {k: ssh.get(k, f.default) for k, f in SSH.items()}
        hosts = tuple(Host(name=h["name"], address=h["address"],
                           port=h.get("port") or ssh["port"], user=h.get("user") or ssh["user"],
                           roles=tuple(h["roles"]), cores=h.get("cores"),
                           memory_mb=h.get("memory_mb")) for h in env["hosts"])
        env_vars = {k: (env["vars"] or {}).get(k, f.default) for k, f in VARS.items()}
        environments[name] = Environment(
            name=name, source=Path(source), domain=env["domain"], hosts=hosts, ssh=ssh,
            vars=env_vars, capacity=dict(env["capacity"] or {"moas": 44, "users": 1000}),
            tls=dict(env["tls"] or {}), app=_app(env.get("app")), apt_proxy=env.get("apt_proxy"),
            control_address=env.get("control_address"), secrets_file=env.get("secrets_file"),
            description=env.get("description") or "")
    return Inventory(source=Path(source), environments=environments)


def _app(app: dict | None) -> dict | None:
    if app is None:
        return None
    out = {k: app.get(k, f.default) for k, f in APP.items()}
    health = dict(APP["health"].default)
    health.update({k: v for k, v in (app.get("health") or {}).items() if v is not None})
    out["health"] = health
    out["env"] = dict(app.get("env") or {})
    return out


def load(path: str | Path) -> Inventory:
    """Read and validate an inventory file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError([Problem(str(path), None, "(file)", f"cannot read: {exc.strerror}")]) \
            from None
    return parse(text, path)
