"""Files shared by web, worker and beat hosts: the app's environment file."""

from ..errors import RenderError
from ..plan import ManagedFile, try_restart
from ..render import Context


def app_env(ctx: Context) -> list[tuple[str, str]]:
    """The app's environment (hosts.yml app.env), each value rendered as a template."""
    app = ctx.env.app
    if app is None:
        raise RenderError(ctx.host.name, "app.env", "no 'app' section in the inventory")
    return [(name, ctx.render_string(value, f"app.env.{name}")) for name, value in app["env"].items()]


def files(ctx: Context) -> list[ManagedFile]:
    # Celery restarts (warm) on a change; web nodes are rolled one at a time instead: the deploy
    # sees that a node's live colour started with other config (appdeploy.CONFIG_FILES).
    notify = tuple(try_restart(u) for role, u in (("worker", "bmms-celery-worker"),
                                                   ("beat", "bmms-celery-beat"))
                   if ctx.host.has(role))
    return [ctx.file("/etc/bmms/app.env", "app/app.env.j2", context={"app_env": app_env(ctx)},
                     owner="root", group="bmms", mode=0o640, secret=True, notify=notify)]
