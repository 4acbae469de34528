"""`inv deploy`: the whole platform, from bare Debian hosts, in phases:

  build      the release's wheelhouse on this machine (before any connection)
  provision  packages, users, directories (every host)
  configure  every rendered file; handlers reload/restart what changed
  database   roles, database and slots on the primary; replicas cloned and streaming
  services   infrastructure units enabled and running
  release    missing wheels sent, release installed offline, collectstatic, check --deploy
  migrate    once, from one web node; static files published to the load balancer(s)
  rolling    web nodes moved to the release one at a time through their idle colour, each
             gated on /health/ and /ready/
  switch     `current` -> release on app hosts, Celery worker/beat restarted (warm)

A phase that fails on any host stops the deploy there: a release that fails to build, install,
pass `check --deploy`, migrate, or pass the first node's gate leaves every host on its previous
release (web nodes not yet rolled, `current` and Celery untouched). A re-run picks up where it
stopped (every phase is idempotent).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from . import appdeploy, database, engine, executor, failover, lock, provision, render, rolling
from . import release as release_mod
from . import secrets as secrets_mod
from .errors import BmmsError
from .executor import HostResult, Printer, Session
from .inventory import Environment


class DeployError(BmmsError):
    """A phase failed; names the phase and every host that failed it."""

    def __init__(self, phase: str, failures: list[BmmsError]):
        self.phase, self.failures = phase, failures
        super().__init__(f"deploy stopped in phase '{phase}':\n" +
                         "\n".join(f"  {e}" for e in failures))


@dataclass
class Report:
    env: str
    release: str = ""
    changes: "OrderedDict[str, list[str]]" = field(default_factory=OrderedDict)
    seconds: dict[str, float] = field(default_factory=dict)
    bytes_sent: dict[str, int] = field(default_factory=dict)

    def add(self, phase: str, host: str, items: list[str]) -> None:
        for item in items:
            self.changes.setdefault(host, []).append(f"{phase}: {item}")

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.changes.values())

    def summary(self, brief: bool = False) -> str:
        lines = [f"deploy of {self.release} to {self.env}: {self.total} change(s)"]
        for host, items in self.changes.items():
            lines.append(f"  {host}: {len(items)} change(s)" if brief else
                         f"  {host}: " + "; ".join(items))
        lines.append("  phases: " + ", ".join(f"{p} {s:.1f}s" for p, s in self.seconds.items()))
        return "\n".join(lines)


class Deployer:
    def __init__(self, env: Environment, printer: Printer | None = None, log=print):
        self.env, self.printer, self.log = env, printer or Printer(), log
        self.secrets = secrets_mod.load(env)
        self.report = Report(env.name)
        self.targets = {t.name: t for t in executor.targets(env)}
        self.parallel = env.ssh["parallel"]

    # -- helpers -------------------------------------------------------------------------------
    def phase(self, name: str, hosts: list[str], fn) -> dict[str, HostResult]:
        start = time.monotonic()
        results = executor.for_each([self.targets[h] for h in hosts], fn, self.parallel,
                                    self.printer)
        self.report.seconds[name] = self.report.seconds.get(name, 0) + time.monotonic() - start
        failures = [r.error for r in results.values() if r.error is not None]
        for r in results.values():
            self.report.add(name, r.host, r.changed)
        if failures:
            raise DeployError(name, failures)
        return results

    def names(self, *roles: str) -> list[str]:
        return [h.name for h in self.env.hosts if any(h.has(r) for r in roles)]

    # -- phases --------------------------------------------------------------------------------
    def run(self) -> Report:
        t0 = time.monotonic()
        release = release_mod.build(self.env, self.log)      # before any connection
        self.report.release = release.id
        self.report.seconds["build"] = time.monotonic() - t0
        with lock.locked(self.env, "deploy", release.id):
            self.phases(release, t0)
        return self.report

    def phases(self, release, t0: float) -> None:
        env = self.env
        all_hosts = [h.name for h in env.hosts]
        web = self.names("web")
        app_hosts = self.names("web", "worker", "beat")

        states: dict[str, rolling.NodeState] = {}

        def facts(s: Session, r: HostResult) -> None:
            if s.run(f"test -d {appdeploy.RELEASES} && echo y || echo n", "probe").strip() == "y":
                states[s.target.name] = rolling.node_state(s, env.host(s.target.name))
            else:
                states[s.target.name] = rolling.NodeState(env.host(s.target.name), None, {}, {})
        self.phase("facts", web, facts)
        colors = rolling.live_colors(states)

        def prov(s: Session, r: HostResult) -> None:
            out = s.run("bash -s", "provision", stdin=provision.script(
                env, env.host(s.target.name)).encode(), timeout=1800)
            r.changed = provision.changes_in(out)
        self.phase("provision", all_hosts, prov)

        primary_name, fenced = failover.effective(env, failover.read_state(env))
        plans = {h: render.render_host(env, env.host(h), self.secrets, active_colors=colors,
                                       db_primary=primary_name, db_fenced=tuple(fenced))
                 for h in all_hosts}

        def configure(s: Session, r: HostResult) -> None:
            engine.converge_session(s, plans[s.target.name], r, mask=self.secrets.mask,
                                    printer=self.printer)
            r.changed = [f"wrote {p}" for p in r.changed] + [f"ran {h}" for h in r.handlers]
        self.phase("configure", all_hosts, configure)

        primary = env.host(primary_name)
        replicas = [n for n in self.names("db_primary", "db_replica")
                    if n != primary_name and n not in fenced]

        def db_primary(s: Session, r: HostResult) -> None:
            r.changed = database.apply_primary(s, self.secrets, replicas)
        self.phase("database", [primary.name], db_primary)

        def db_replica(s: Session, r: HostResult) -> None:
            out = s.run("bash -s", "clone replica", stdin=database.replica_script(
                primary.address, s.target.name).encode(), timeout=3600)
            r.changed = provision.changes_in(out)
        if replicas:
            self.phase("database", replicas, db_replica)

        def services(s: Session, r: HostResult) -> None:
            units = [u for u in provision.services_for(env.host(s.target.name))
                     if not u.startswith("bmms-")
                     and not (s.target.name in fenced and u.startswith("postgresql@"))]
            r.changed = provision.changes_in(s.run("bash -s", "services",
                                                   stdin=provision.enable_script(units).encode()))
        self.phase("services", all_hosts, services)

        def ship(s: Session, r: HostResult) -> None:
            have = appdeploy.facts(s)["wheels"]
            sent, nbytes = appdeploy.ship_wheels(s, release, have)
            self.report.bytes_sent[s.target.name] = nbytes
            r.changed = ([f"sent {len(sent)} wheel(s), {nbytes / 1e6:.1f} MB"] if sent else [])
            r.changed += appdeploy.install(s, release)
        self.phase("release", app_hosts, ship)

        def migrate(s: Session, r: HostResult) -> None:
            r.changed = appdeploy.migrate(s, release)
            archive = appdeploy.static_archive(s, release)
            for lb_name in self.names("lb"):
                with Session(self.targets[lb_name]) as lb:
                    self.report.add("static", lb_name, appdeploy.publish_static(lb, release, archive))
        self.phase("migrate", web[:1] or app_hosts[:1], migrate)

        start = time.monotonic()
        self.roll(web, release.id)
        self.report.seconds["rolling"] = time.monotonic() - start

        def switch(s: Session, r: HostResult) -> None:
            host = env.host(s.target.name)
            units = [u for u in provision.services_for(host) if u.startswith("bmms-celery")]
            r.changed = appdeploy.switch(s, release, env.app["keep_releases"], units)
            r.changed += provision.changes_in(s.run("bash -s", "app services",
                                                    stdin=provision.enable_script(units).encode()))
        self.phase("switch", app_hosts, switch)

        self.report.seconds["total"] = time.monotonic() - t0

    def roll(self, web: list[str], release_id: str) -> None:
        try:
            done = rolling.roll_web(self.env, self.secrets, self.targets, web,
                                    lambda s: release_id, force=False, printer=self.printer)
        except BmmsError as exc:
            raise DeployError("rolling", [exc]) from None
        for name, items in done.items():
            self.report.add("rolling", name, items)


def deploy(env: Environment, printer: Printer | None = None, log=print) -> Report:
    return Deployer(env, printer, log).run()


def rollback(env: Environment, to: str | None = None, printer: Printer | None = None) -> Report:
    """Back to the previous (or named) release through the same rolling path. Migrations are not
    reversed: releases must keep the schema backward compatible (expand/contract)."""
    printer = printer or Printer()
    d = Deployer(env, printer)
    app_hosts = d.names("web", "worker", "beat")
    facts: dict[str, dict] = {}

    def gather(s: Session, r: HostResult) -> None:
        facts[s.target.name] = appdeploy.facts(s)
    d.phase("facts", app_hosts, gather)
    first = facts[app_hosts[0]]
    if to is None:
        older = [r for r in first["releases"] if r != first["current"]]
        if first["current"] in first["releases"]:
            older = first["releases"][:first["releases"].index(first["current"])]
        if not older:
            raise BmmsError(f"{app_hosts[0]}: no release before {first['current']} to roll back to")
        to = older[-1]
    lacking = [h for h in app_hosts if to not in facts[h]["releases"]]
    if lacking:
        raise BmmsError(f"release {to} is not installed on {', '.join(lacking)} "
                        f"(installed on {app_hosts[0]}: {', '.join(first['releases'])})")
    d.report.release = to
    target = type("ReleaseRef", (), {"id": to})()
    with lock.locked(env, "rollback", to):
        def switch(s: Session, r: HostResult) -> None:
            units = [u for u in provision.services_for(env.host(s.target.name))
                     if u.startswith("bmms-celery")]
            r.changed = appdeploy.switch(s, target, env.app["keep_releases"], units)
        d.phase("switch", app_hosts, switch)
        d.roll(d.names("web"), to)
    return d.report
