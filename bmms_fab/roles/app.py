"""Files shared by web, worker and beat hosts: the app's environment file."""

from ..errors import RenderError
from ..plan import ManagedFile
from ..render import Context


def app_env(ctx: Context) -> list[tuple[str, str]]:
    """The app's environment (hosts.yml app.env), each value rendered as a template."""
    app = ctx.env.app
    if app is None:
        raise RenderError(ctx.host.name, "app.env", "no 'app' section in the inventory")
    return [(name, ctx.render_string(value, f"app.env.{name}")) for name, value in app["env"].items()]


def files(ctx: Context) -> list[ManagedFile]:
    units = []
    if ctx.host.has("web"):
        units += ["bmms-gunicorn@blue", "bmms-gunicorn@green"]
    # The env file notifies no restart: new values reach the app with the next release switch
    # (rolling restart), never by restarting every process at once.
    return [ctx.file("/etc/bmms/app.env", "app/app.env.j2", context={"app_env": app_env(ctx)},
                     owner="root", group="bmms", mode=0o640, secret=True)]
