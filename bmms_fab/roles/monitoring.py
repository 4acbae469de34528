"""Prometheus (scraping every exporter and the app), alert rules, Grafana provisioning."""

from ..plan import ManagedFile, reload, try_restart
from ..render import TEMPLATES_DIR, Context

EXPORTER_JOBS = (
    ("node", None, "node_exporter"),
    ("postgres", ("db_primary", "db_replica"), "postgres_exporter"),
    ("redis", ("redis_master", "redis_replica"), "redis_exporter"),
    ("pgbouncer", ("pgbouncer",), "pgbouncer_exporter"),
    ("nginx", ("lb",), "nginx_exporter"),
)
DASHBOARDS = ("bmms-overview.json",)


def exporter_jobs(ctx: Context) -> list[tuple[str, tuple | None, int]]:
    ports = ctx.base()["ports"]
    return [(job, roles, ports[port]) for job, roles, port in EXPORTER_JOBS]


def files(ctx: Context) -> list[ManagedFile]:
    jobs = exporter_jobs(ctx)
    extra = {"exporter_jobs": jobs, "self_signed": not ctx.env.tls.get("certificate")}
    prom = reload("prometheus")
    out = [
        ctx.file("/etc/prometheus/bmms-rules.yml", "prometheus/bmms-rules.yml.j2",
                 notify=(prom,), check="promtool check rules {path}"),
        ctx.file("/etc/prometheus/prometheus.yml", "prometheus/prometheus.yml.j2",
                 context=extra, notify=(prom,), check="promtool check config {path}"),
        ctx.file("/etc/grafana/provisioning/datasources/bmms.yml", "grafana/datasource.yml.j2",
                 notify=(try_restart("grafana-server"),)),
        ctx.file("/etc/grafana/provisioning/dashboards/bmms.yml", "grafana/dashboards.yml.j2",
                 notify=(try_restart("grafana-server"),)),
    ]
    for name in DASHBOARDS:  # raw JSON: Grafana legends use {{ }} themselves
        out.append(ManagedFile(f"/var/lib/grafana/dashboards/bmms/{name}",
                               (TEMPLATES_DIR / "grafana" / "dashboards" / name).read_bytes()))
    return out
