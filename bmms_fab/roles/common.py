"""Every host: apt proxy, node exporter, the tool's own directories."""

from ..plan import ManagedFile, restart
from ..render import Context


def files(ctx: Context) -> list[ManagedFile]:
    out = [ctx.file("/etc/default/prometheus-node-exporter", "exporters/node.default.j2",
                    notify=(restart("prometheus-node-exporter"),))]
    if ctx.env.apt_proxy:
        out.append(ManagedFile(
            "/etc/apt/apt.conf.d/01bmms-proxy",
            f'// Managed by bmms-fab\nAcquire::http::Proxy "{ctx.env.apt_proxy}";\n'.encode()))
    return out
