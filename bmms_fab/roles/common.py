"""Every host: apt proxy, node exporter."""

from ..plan import ManagedFile, restart
from ..render import Context


def apt_proxy_file(proxy: str) -> ManagedFile:
    """apt goes through the site's caching proxy (apt-cacher-ng in the lab, or air-gapped sites)."""
    return ManagedFile("/etc/apt/apt.conf.d/01bmms-proxy",
                       f'// Managed by bmms-fab\nAcquire::http::Proxy "{proxy}";\n'.encode())


def files(ctx: Context) -> list[ManagedFile]:
    out = [ctx.file("/etc/default/prometheus-node-exporter", "exporters/node.default.j2",
                    notify=(restart("prometheus-node-exporter"),))]
    if ctx.env.apt_proxy:
        out.append(apt_proxy_file(ctx.env.apt_proxy))
    return out
