"""`inv configure`: render every host's files and converge them (the config phase of deploy)."""

from __future__ import annotations

from . import engine, executor, failover, render, rolling
from . import secrets as secrets_mod
from .inventory import Environment


def live_state(env: Environment, targets: dict) -> dict:
    """What rendering depends on in the running platform: each web node's live colour and the
    primary after any failover."""
    states = {}
    for h in env.with_role("web"):
        with executor.Session(targets[h.name]) as s:
            if s.run("test -f /srv/bmms/live-color && echo y || echo n", "probe").strip() == "y":
                states[h.name] = rolling.node_state(s, h)
    primary, fenced = failover.effective(env, failover.read_state(env))
    return {"active_colors": rolling.live_colors(states), "db_primary": primary,
            "db_fenced": tuple(fenced)}


def run(env: Environment, limit: list[str] | None = None, dry_run: bool = False,
        diff: bool = False, printer: executor.Printer | None = None) -> bool:
    """Converge; print per-host lines and a summary. True when no host failed."""
    printer = printer or executor.Printer()
    secrets = secrets_mod.load(env)
    all_targets = {t.name: t for t in executor.targets(env)}
    targets = executor.targets(env, limit)
    state = live_state(env, all_targets)
    plans = {t.name: render.render_host(env, env.host(t.name), secrets, **state) for t in targets}
    results = engine.converge(targets, plans, parallel=env.ssh["parallel"], dry_run=dry_run,
                              diff=diff, mask=secrets.mask, printer=printer)
    print(executor.summary(results))
    return all(r.status != "failed" for r in results.values())
