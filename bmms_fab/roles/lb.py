"""nginx load balancer: TLS, least_conn upstream of each app node's live colour, rate limits."""

from ..plan import ManagedFile, reload, restart
from ..render import Context

SELF_SIGNED_CERT = "/etc/ssl/bmms/selfsigned.crt"
SELF_SIGNED_KEY = "/etc/ssl/bmms/selfsigned.key"
CERT = "/etc/ssl/bmms/bmms.crt"
KEY = "/etc/ssl/bmms/bmms.key"


def tls_paths(ctx: Context) -> tuple[str, str]:
    """Where nginx finds its certificate: the operator's (uploaded) or a self-signed one."""
    if ctx.env.tls.get("certificate"):
        return CERT, KEY
    return SELF_SIGNED_CERT, SELF_SIGNED_KEY


def files(ctx: Context) -> list[ManagedFile]:
    cert, key = tls_paths(ctx)
    return [
        ctx.file("/etc/nginx/nginx.conf", "nginx/nginx.conf.j2",
                 context={"tls_certificate": cert, "tls_key": key},
                 notify=(reload("nginx"),), check="nginx -t -q -c {path}"),
        ctx.file("/etc/default/prometheus-nginx-exporter", "exporters/nginx.default.j2",
                 notify=(restart("prometheus-nginx-exporter"),)),
    ]
