"""`inv configure`: render every host's files and converge them (the config phase of deploy)."""

from __future__ import annotations

from . import engine, executor, render
from . import secrets as secrets_mod
from .inventory import Environment
from .state import live_state


def run(env: Environment, limit: list[str] | None = None, dry_run: bool = False,
        diff: bool = False, printer: executor.Printer | None = None) -> bool:
    """Converge; print per-host lines and a summary. True when no host failed."""
    printer = printer or executor.Printer()
    secrets = secrets_mod.load(env)
    targets = executor.targets(env, limit)
    state = live_state(env)
    plans = {t.name: render.render_host(env, env.host(t.name), secrets, **state) for t in targets}
    results = engine.converge(targets, plans, parallel=env.ssh["parallel"], dry_run=dry_run,
                              diff=diff, mask=secrets.mask, printer=printer)
    print(executor.summary(results))
    return all(r.status != "failed" for r in results.values())
