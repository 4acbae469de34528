"""Provisioning per role: Debian packages, service users, directories, the lab's self-signed
certificate. Pure: builds one idempotent shell script per host, which prints `CHANGED: ...` for
each thing it actually changes (and nothing else on a host that is already right)."""

from __future__ import annotations

import shlex

from .inventory import Environment, Host
from .render import APP_ROOT, PG_VERSION
from .roles.lb import SELF_SIGNED_CERT, SELF_SIGNED_KEY

PACKAGES = {
    "*": ["prometheus-node-exporter", "curl", "ca-certificates", "nftables"],
    "lb": ["nginx-light", "prometheus-nginx-exporter", "openssl"],
    "web": ["python3-venv"],
    "worker": ["python3-venv"],
    "beat": ["python3-venv"],
    "db_primary": [f"postgresql-{PG_VERSION}", "prometheus-postgres-exporter"],
    "db_replica": [f"postgresql-{PG_VERSION}", "prometheus-postgres-exporter"],
    "pgbouncer": ["pgbouncer", "prometheus-pgbouncer-exporter", "postgresql-client"],
    "redis_master": ["redis-server", "prometheus-redis-exporter"],
    "redis_replica": ["redis-server", "prometheus-redis-exporter"],
    "sentinel": ["redis-sentinel"],
    "monitoring": ["prometheus"],
    "backup": [f"postgresql-{PG_VERSION}", f"postgresql-client-{PG_VERSION}", "redis-tools"],
}

# Units each role runs; enabled and started at deploy.
SERVICES = {
    "*": ["prometheus-node-exporter", "nftables"],
    "lb": ["nginx", "prometheus-nginx-exporter"],
    "db_primary": [f"postgresql@{PG_VERSION}-main", "prometheus-postgres-exporter"],
    "db_replica": [f"postgresql@{PG_VERSION}-main", "prometheus-postgres-exporter"],
    "pgbouncer": ["pgbouncer", "prometheus-pgbouncer-exporter"],
    "redis_master": ["redis-server", "prometheus-redis-exporter"],
    "redis_replica": ["redis-server", "prometheus-redis-exporter"],
    "sentinel": ["redis-sentinel"],
    "monitoring": ["prometheus"],
    "worker": ["bmms-celery-worker"],
    "beat": ["bmms-celery-beat"],
}

APP_ROLES = ("web", "worker", "beat")


def packages_for(host: Host) -> list[str]:
    out: list[str] = []
    for role in ("*",) + host.roles:
        for p in PACKAGES.get(role, []):
            if p not in out:
                out.append(p)
    return out


def services_for(host: Host) -> list[str]:
    out: list[str] = []
    for role in ("*",) + host.roles:
        for s in SERVICES.get(role, []):
            if s not in out:
                out.append(s)
    return out


def script(env: Environment, host: Host) -> str:
    """The provisioning script of one host (no secrets in it)."""
    pkgs = " ".join(shlex.quote(p) for p in packages_for(host))
    lines = [
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive",
    ]
    if host.has("backup") and not (host.has("db_primary") or host.has("db_replica")):
        # the server binaries verify restores in a scratch cluster: no default cluster here
        # (postgresql-common reads only createcluster.conf; --force-confold keeps this line)
        f = "/etc/postgresql-common/createcluster.conf"
        lines += [
            f"if ! grep -qx 'create_main_cluster = false' {f} 2>/dev/null; then",
            "  install -d /etc/postgresql-common",
            f"  if grep -q '^#* *create_main_cluster' {f} 2>/dev/null; then",
            f"    sed -i 's/^#* *create_main_cluster.*/create_main_cluster = false/' {f}",
            f"  else echo 'create_main_cluster = false' >> {f}; fi",
            "  echo 'CHANGED: no default PostgreSQL cluster on the backup host'",
            "fi",
        ]
    lines += [
        f"want='{pkgs}'",
        "missing=''",
        "for p in $want; do",
        "  dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'install ok installed' "
        "|| missing=\"$missing $p\"",
        "done",
        "if [ -n \"$missing\" ]; then",
        "  apt-get update -q >/dev/null",
        "  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "
        "$missing >/dev/null",
        "  echo \"CHANGED: installed$missing\"",
        "fi",
    ]
    if any(host.has(r) for r in APP_ROLES):
        lines += [
            "if ! id bmms >/dev/null 2>&1; then",
            f"  useradd --system --home-dir {APP_ROOT} --shell /usr/sbin/nologin bmms",
            "  echo 'CHANGED: user bmms'",
            "fi",
        ]
    dirs = [("/etc/bmms", "root", "root" if not any(host.has(r) for r in APP_ROLES) else "bmms",
             "0750"), ("/var/lib/bmms-fab", "root", "root", "0700")]
    if any(host.has(r) for r in APP_ROLES):
        dirs += [(APP_ROOT, "root", "root", "0755"), (f"{APP_ROOT}/releases", "root", "root", "0755"),
                 (f"{APP_ROOT}/wheels", "root", "root", "0755"),
                 (f"{APP_ROOT}/slots", "root", "root", "0755"),
                 (f"{APP_ROOT}/shared", "root", "root", "0755"),
                 (f"{APP_ROOT}/shared/media", "bmms", "bmms", "0750"),
                 ("/var/log/bmms", "bmms", "bmms", "0750")]
    if host.has("lb"):
        dirs += [(APP_ROOT, "root", "root", "0755"), (f"{APP_ROOT}/shared", "root", "root", "0755"),
                 (f"{APP_ROOT}/shared/static", "root", "root", "0755"),
                 ("/etc/ssl/bmms", "root", "root", "0750")]
    if host.has("monitoring"):
        dirs += [("/etc/grafana/provisioning/datasources", "root", "root", "0755"),
                 ("/etc/grafana/provisioning/dashboards", "root", "root", "0755"),
                 ("/var/lib/grafana/dashboards/bmms", "root", "root", "0755")]
    seen = set()
    for path, owner, group, mode in dirs:
        if path in seen:
            continue
        seen.add(path)
        lines.append(
            f"if [ \"$(stat -c '%U:%G:%a' {path} 2>/dev/null)\" != '{owner}:{group}:{mode.lstrip('0')}' ]; "
            f"then install -d -o {owner} -g {group} -m {mode} {path}; echo 'CHANGED: dir {path}'; fi")
    if host.has("lb") and not env.tls.get("certificate"):
        cn = shlex.quote(f"/CN={env.domain}")
        san = shlex.quote(f"subjectAltName=DNS:{env.domain},IP:{host.address}")
        lines += [
            f"if [ ! -s {SELF_SIGNED_CERT} ]; then",
            f"  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj {cn} -addext {san} "
            f"-keyout {SELF_SIGNED_KEY} -out {SELF_SIGNED_CERT} 2>/dev/null",
            f"  chmod 600 {SELF_SIGNED_KEY}",
            "  echo 'CHANGED: self-signed certificate'",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def enable_script(services: list[str]) -> str:
    """Enable and start each unit that is not already enabled and active."""
    lines = ["set -eu"]
    for s in services:
        q = shlex.quote(s)
        lines.append(f"if ! systemctl is-enabled --quiet {q} 2>/dev/null; then "
                     f"systemctl enable --quiet {q}; echo 'CHANGED: enabled {s}'; fi")
        lines.append(f"if ! systemctl is-active --quiet {q}; then "
                     f"systemctl start {q}; echo 'CHANGED: started {s}'; fi")
    return "\n".join(lines) + "\n"


def changes_in(output: str) -> list[str]:
    return [l[len("CHANGED: "):] for l in output.splitlines() if l.startswith("CHANGED: ")]
