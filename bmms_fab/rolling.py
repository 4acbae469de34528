"""Zero-downtime rolling blue/green restarts, one web node at a time:

  1. start the idle colour's gunicorn on the target release;
  2. gate: /health/ and /ready/ on that node pass N times in a row within a timeout;
  3. record the node's live colour, switch its upstream on the load balancer(s) (nginx -t, then
     a graceful reload);
  4. drain: wait (bounded) for the old colour's in-flight requests, then stop it gracefully;
  5. next node.

A node that fails its gate: its new colour is stopped, the old one keeps serving, the rollout stops.
Interrupted at any point, every node is still served by exactly one healthy colour (the live file
is written only after the gate, the LB is switched only to a gated colour); a re-run finishes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from . import appdeploy, engine, render
from .errors import StepError
from .executor import HostResult, Printer, Session
from .inventory import Environment, Host
from .render import APP_ROOT, COLORS
from .secrets import Secrets


class GateError(StepError):
    """A node's new colour did not pass its health gate."""


def other(color: str | None) -> str:
    return "green" if color == "blue" else "blue"


@dataclass
class NodeState:
    host: Host
    live: str | None
    slots: dict
    units: dict
    live_config: str | None = None     # app config the live colour started with
    config: str | None = None          # app config on disk now
    current: str | None = None         # release `current` points to
    releases: tuple = ()               # complete releases on the host, oldest first

    def serving(self, release: str) -> bool:
        """The live colour runs `release` with the config now on disk."""
        return (self.live is not None and self.slots.get(self.live) == release
                and self.units.get(self.live) == "active" and self.live_config == self.config)


def gate_script(env: Environment, host: Host, color: str) -> str:
    h = env.app["health"]
    port = COLORS[color]
    header = f"-H {shlex.quote('Host: ' + h['host_header'])}" if h.get("host_header") else ""
    base = f"http://{host.address}:{port}"
    return f"""set -u
ok=0; last='no response yet'; end=$((SECONDS + {h['start_timeout']}))
while [ $SECONDS -lt $end ]; do
  state=$(systemctl is-active bmms-gunicorn@{color})
  case $state in active|activating|reloading) ;; *) last="unit bmms-gunicorn@{color} is $state"; break;; esac
  hc=$(curl -s -o /tmp/bmms-gate-h -w '%{{http_code}}' -m {h['timeout']} {header} {base}{h['path']} || true)
  rc=$(curl -s -o /tmp/bmms-gate-r -w '%{{http_code}}' -m {h['timeout']} {header} {base}{h['ready_path']} || true)
  if [ "$hc" = 200 ] && [ "$rc" = 200 ]; then
    ok=$((ok + 1)); [ $ok -ge {h['passes']} ] && exit 0
  else
    ok=0
    last="{h['path']} -> $hc, {h['ready_path']} -> $rc: $(head -c 400 /tmp/bmms-gate-r 2>/dev/null)"
  fi
  sleep 1
done
echo "$last"
exit 1
"""


def node_state(session: Session, host: Host) -> NodeState:
    f = appdeploy.facts(session)
    return NodeState(host, f["live"], f["slots"], f["units"], f["live_config"], f["config"],
                     f["current"], tuple(f["releases"]))


def live_colors(states: dict[str, NodeState]) -> dict[str, str]:
    return {n: s.live for n, s in states.items() if s.live}


def switch_lbs(lbs: list[Session], env: Environment, secrets: Secrets, colors: dict[str, str],
               printer: Printer) -> None:
    for lb in lbs:
        host = env.host(lb.target.name)
        plan = render.render_host(env, host, secrets, active_colors=colors)
        result = HostResult(host.name)
        engine.converge_session(lb, plan, result, mask=secrets.mask, printer=printer)


def drain_lb(lbs: list[Session], timeout: int) -> None:
    """Wait until no nginx worker of an earlier configuration is still finishing requests."""
    for lb in lbs:
        # anchored: this loop's own command line contains the words too
        lb.run(f"for i in $(seq {timeout * 5}); do pgrep -f '^nginx: worker process is shutting down'"
               " >/dev/null || exit 0; sleep 0.2; done; exit 0", "drain")


def roll_node(node: Session, lbs: list[Session], env: Environment, secrets: Secrets,
              release: str, state: NodeState, colors: dict[str, str], printer: Printer,
              force: bool = False) -> list[str]:
    """Move one node onto `release` through its idle colour. Returns the changes made."""
    name = node.target.name
    if state.serving(release) and not force:
        changes = []
        stale = other(state.live)
        if state.units.get(stale) in ("active", "activating"):
            node.run(f"systemctl stop bmms-gunicorn@{stale}", "stop stale colour")
            changes.append(f"stopped stale {stale}")
        if colors.get(name) != state.live:
            colors[name] = state.live
            switch_lbs(lbs, env, secrets, colors, printer)
            changes.append(f"lb -> {state.live}")
        return changes
    old, new = state.live, other(state.live)
    printer(name, f"starting {new} on {release} (live: {old or 'none'})")
    try:
        node.run(f"cd {APP_ROOT}/slots && ln -sfn ../releases/{shlex.quote(release)} {new}.tmp && "
                 f"mv -T {new}.tmp {new} && systemctl restart bmms-gunicorn@{new}",
                 f"start {new}", timeout=300)
        code, out, _ = node.exec(f"bash -c {shlex.quote(gate_script(env, state.host, new))}")
    except BaseException:
        # interrupted before the gate passed: the new colour never served; stop it if we can
        try:
            node.exec(f"systemctl stop bmms-gunicorn@{new}", timeout=30)
        except Exception:   # the connection itself may be what was lost
            pass
        raise
    if code != 0:
        node.exec(f"systemctl stop bmms-gunicorn@{new}")
        journal = node.run(f"journalctl -u bmms-gunicorn@{new} -n 20 --no-pager -o cat",
                           "journal", check=False)
        raise GateError(name, f"health gate of {new} ({release})",
                        f"last response: {out.decode(errors='replace').strip()[-500:]}",
                        None, f"journal of bmms-gunicorn@{new}:\n{journal.strip()}")
    node.run(f"echo {new} > {appdeploy.LIVE_FILE}.tmp && mv -T {appdeploy.LIVE_FILE}.tmp "
             f"{appdeploy.LIVE_FILE} && echo {state.config} > {appdeploy.LIVE_CONFIG_FILE} && "
             f"systemctl enable --quiet bmms-gunicorn@{new}", "record live colour")
    colors[name] = new
    switch_lbs(lbs, env, secrets, colors, printer)
    printer(name, f"load balancer now sends {name} to {new}")
    changes = [f"{old or 'none'} -> {new} ({release})"]
    if old:
        drain_lb(lbs, env.app["health"]["drain_timeout"])
        node.run(f"systemctl disable --quiet bmms-gunicorn@{old}; systemctl stop bmms-gunicorn@{old}",
                 f"stop {old}", timeout=env.app["health"]["drain_timeout"] + 90)
        printer(name, f"{old} drained and stopped")
    return changes


def plan_line(state: NodeState, release: str, force: bool) -> str:
    if state.serving(release) and not force:
        return f"{state.host.name}: {state.live} already serves {release}: nothing to do"
    return (f"{state.host.name}: start {other(state.live)} on {release}, gate, switch the load "
            f"balancer, drain and stop {state.live or '(none)'}")


def roll_web(env: Environment, secrets: Secrets, targets: dict, names: list[str], release_for,
             force: bool, printer: Printer, dry_run: bool = False) -> dict[str, list[str]]:
    """Roll the named web nodes one at a time; `release_for(state)` picks each node's release.
    Stops at the first node that fails (GateError or any step error)."""
    from .executor import Session as S
    done: dict[str, list[str]] = {}
    lbs = [] if dry_run else [S(targets[h.name]).open() for h in env.with_role("lb")]
    colors: dict[str, str] = {}
    try:
        states = {}
        for h in env.with_role("web"):
            with S(targets[h.name]) as s:
                states[h.name] = node_state(s, h)
        colors.update(live_colors(states))
        for name in names:
            state = states[name]
            release = release_for(state)
            if release is None:
                raise StepError(name, "rolling restart", "no release installed on this node")
            if dry_run:
                printer(name, plan_line(state, release, force))
                continue
            with S(targets[name]) as node:
                state = node_state(node, state.host)
                done[name] = roll_node(node, lbs, env, secrets, release, state, colors, printer,
                                       force=force)
    finally:
        for lb in lbs:
            lb.close()
    return done


def rolling_restart(env: Environment, secrets: Secrets, limit: list[str] | None = None,
                    dry_run: bool = False, printer: Printer | None = None) -> list[str]:
    """Every (or each named) web node through its idle colour onto the release it runs, then
    Celery warm restarts. Takes the deploy lock unless it only prints the plan."""
    from . import executor, lock
    from .errors import UsageError
    names = [h.name for h in env.with_role("web")]
    if limit:
        unknown = set(limit) - set(names)
        if unknown:
            raise UsageError(f"--limit: not web nodes of {env.name}: {', '.join(sorted(unknown))}")
        names = [n for n in names if n in limit]
    targets = {t.name: t for t in executor.targets(env)}
    printer = printer or Printer()

    def go() -> None:
        roll_web(env, secrets, targets, names, lambda s: s.current, force=True,
                 printer=printer, dry_run=dry_run)
        restart_celery(env, targets, printer, dry_run=dry_run, limit=limit)
    if dry_run:
        go()
    else:
        with lock.locked(env, "rolling-restart"):
            go()
    return names


def restart_celery(env: Environment, targets: dict, printer: Printer, dry_run: bool = False,
                   limit: list[str] | None = None) -> dict[str, list[str]]:
    """Warm restarts: SIGTERM lets running tasks finish (acks_late: none is lost), one host at
    a time; beat (a singleton) last."""
    from .executor import Session as S
    out: dict[str, list[str]] = {}
    order = [(h, "bmms-celery-worker") for h in env.with_role("worker")] + \
            [(h, "bmms-celery-beat") for h in env.with_role("beat")]
    for host, unit in order:
        if limit and host.name not in limit:
            continue
        if dry_run:
            printer(host.name, f"warm restart of {unit}")
            continue
        with S(targets[host.name]) as s:
            s.run(f"systemctl restart {unit}", f"restart {unit}", timeout=700)
        printer(host.name, f"{unit} restarted (warm)")
        out.setdefault(host.name, []).append(f"restarted {unit}")
    return out
