"""bmms-fab tasks. `inv --list` shows them; `inv --help TASK` shows a task's options."""

from __future__ import annotations

import json
from pathlib import Path

from invoke import Collection, task

from bmms_fab import capacity as capacity_mod
from bmms_fab import render as render_mod
from bmms_fab import secrets as secrets_mod
from bmms_fab.cli import load_env, reports_errors
from bmms_fab.errors import UsageError


@task(help={"hosts": "environment in hosts.yml (lab, staging, prod)",
            "out": "directory to write into (default: out/ENV)"})
@reports_errors
def render(c, hosts=None, out=None):
    """Render every host's configuration files into a directory for review."""
    env = load_env(hosts)
    plans = render_mod.render_env(env, secrets_mod.load(env))
    out_dir = Path(out or f"out/{env.name}")
    written = render_mod.write_tree(plans, out_dir)
    print(f"{len(written)} files for {len(plans)} hosts written under {out_dir}/")


@task(help={"hosts": "environment in hosts.yml"})
@reports_errors
def check(c, hosts=None):
    """Validate the inventory, the secrets and the rendering of every host (no connection)."""
    env = load_env(hosts)
    secrets = secrets_mod.load(env)
    plans = render_mod.render_env(env, secrets)
    files = sum(len(p.files) for p in plans.values())
    print(f"{env.name}: inventory ok ({len(env.hosts)} hosts), secrets ok, "
          f"{files} files render")


@task(help={"moas": "number of ministries (MOAs)", "users": "concurrent users",
            "export_json": "also write the plan as JSON to this file"})
@reports_errors
def capacity(c, moas=44, users=1000, export_json=None):
    """Size the platform (servers, pools, memory, traffic, cost) for MOAs and users."""
    try:
        moas, users = int(moas), int(users)
    except ValueError:
        raise UsageError("--moas and --users take whole numbers") from None
    plan = capacity_mod.plan(moas, users)
    print(capacity_mod.report(plan))
    if export_json:
        Path(export_json).write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
        print(f"plan written to {export_json}")


@task(name="init", help={"hosts": "environment in hosts.yml"})
@reports_errors
def secrets_init(c, hosts=None):
    """Generate strong random values for every secret the environment lacks (keeps existing)."""
    env = load_env(hosts)
    path, added = secrets_mod.init(env)
    if added:
        print(f"{path}: generated {', '.join(added)}")
    else:
        print(f"{path}: every secret already set")


@task(help={"k": "only tests matching this expression (pytest -k)",
            "unit": "only the unit and checker tests (no lab)"})
def test(c, k=None, unit=False):
    """Run the test suite (unit, real config checkers, lab); no tests collected is a failure."""
    import subprocess
    import sys
    args = [sys.executable, "-m", "pytest"]
    if k:
        args += ["-k", k]
    if unit:
        args += ["-m", "not lab"]
    code = subprocess.call(args)
    if code == 5:
        print("error: pytest collected no tests", file=sys.stderr)
        code = 1
    raise SystemExit(code)


def _limit(limit):
    return [n.strip() for n in limit.split(",") if n.strip()] if limit else None


@task(help={"hosts": "environment in hosts.yml", "yes": "trust without asking",
            "limit": "only these hosts (comma-separated names)"})
@reports_errors
def trust(c, hosts=None, yes=False, limit=None):
    """Show each host's SSH key fingerprint and record it in known_hosts when confirmed."""
    from bmms_fab import executor
    env = load_env(hosts)

    def confirm(question):
        if yes:
            return True
        return input(question + " [y/N] ").strip().lower() in ("y", "yes")

    for line in executor.trust(executor.targets(env, _limit(limit)), confirm):
        print(line)


@task(help={"hosts": "environment in hosts.yml", "limit": "only these hosts (comma-separated)",
            "dry_run": "show what would change, change nothing",
            "diff": "show unified diffs (secrets masked) and change nothing"})
@reports_errors
def configure(c, hosts=None, limit=None, dry_run=False, diff=False):
    """Converge every host's configuration files; services reload/restart only if theirs changed."""
    from bmms_fab import configure as configure_mod
    from bmms_fab import lock
    env = load_env(hosts)
    if dry_run or diff:     # reads only: no lock
        ok = configure_mod.run(env, limit=_limit(limit), dry_run=True, diff=diff)
    else:
        with lock.locked(env, "configure"):
            ok = configure_mod.run(env, limit=_limit(limit))
    if not ok:
        raise SystemExit(1)


@task(help={"hosts": "environment in hosts.yml"})
@reports_errors
def deploy(c, hosts=None):
    """Deploy the whole platform: packages, configs, database, release, rolling restart."""
    from bmms_fab import deploy as deploy_mod
    env = load_env(hosts)
    report = deploy_mod.deploy(env)
    print(report.summary())


@task(help={"hosts": "environment in hosts.yml"})
@reports_errors
def verify(c, hosts=None):
    """Check the running platform end to end (LB, app, replicas, Sentinels, Prometheus)."""
    from bmms_fab import executor, verify as verify_mod
    env = load_env(hosts)
    checks = verify_mod.verify(env, secrets_mod.load(env),
                               {t.name: t for t in executor.targets(env)})
    for check_ in checks:
        print(check_)
    failed = [x for x in checks if not x.ok]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise SystemExit(1)


@task(help={"hosts": "lab environment (default: lab)"})
@reports_errors
def demo(c, hosts="lab"):
    """Boot the lab, deploy the whole platform on it, check it, and print where to look."""
    import time
    from bmms_fab import deploy as deploy_mod, executor, labctl, verify as verify_mod
    t0 = time.monotonic()
    lab = _lab(hosts)
    secrets_mod.init(lab.env)
    print(f"demo: booting the lab ({len(lab.env.hosts)} Debian 12 containers)...")
    labctl.up(lab)
    print("demo: deploying the platform (first run installs packages through the apt proxy)...")
    report = deploy_mod.deploy(lab.env, printer=executor.Printer(quiet=True))
    print(report.summary(brief=True))
    secrets = secrets_mod.load(lab.env)
    checks = verify_mod.verify(lab.env, secrets, {t.name: t for t in executor.targets(lab.env)})
    for check_ in checks:
        print(check_)
    env = lab.env
    lb = env.with_role("lb")[0]
    mon = env.with_role("monitoring")
    print(f"""
demo: done in {time.monotonic() - t0:.0f}s. Where to look:
  the site       curl -k --resolve {env.domain}:443:{lb.address} https://{env.domain}/version/
  Prometheus     http://{mon[0].address}:9090/targets (from this machine)
  a host         ssh -i {lab.key} -o UserKnownHostsFile={lab.known_hosts} root@{env.hosts[0].address}
  lab state      ./bmms-fab lab.status     (stop it all: ./bmms-fab lab.down)
  again          ./bmms-fab deploy --hosts {env.name}   (a second run changes nothing)""")
    if not all(x.ok for x in checks):
        raise SystemExit(1)


@task(name="rolling-restart",
      help={"hosts": "environment in hosts.yml",
            "limit": "only these web nodes (comma-separated), e.g. app2",
            "dry_run": "print the plan, change nothing"})
@reports_errors
def rolling_restart(c, hosts=None, limit=None, dry_run=False):
    """Restart web nodes one at a time through their idle colour (zero downtime), then Celery."""
    from bmms_fab import rolling
    env = load_env(hosts)
    names = rolling.rolling_restart(env, secrets_mod.load(env), _limit(limit), dry_run)
    if not dry_run:
        print(f"rolling restart of {', '.join(names)} done")


@task(help={"hosts": "environment in hosts.yml",
            "to": "release id to return to (default: the one before the current)"})
@reports_errors
def rollback(c, hosts=None, to=None):
    """Return to the previous (or a named) release through the same rolling path."""
    from bmms_fab import deploy as deploy_mod
    env = load_env(hosts)
    report = deploy_mod.rollback(env, to)
    print(report.summary().replace("deploy of", "rollback to"))


@task(name="status", help={"hosts": "environment in hosts.yml"})
@reports_errors
def lock_status(c, hosts=None):
    """Show who holds the environment's deploy lock, if anyone."""
    from bmms_fab import lock
    from bmms_fab.executor import Session
    env = load_env(hosts)
    with Session(lock.lock_target(env)) as s:
        info = lock.status(s)
    print(f"{env.name}: locked by {lock.describe(info)}" if info else f"{env.name}: not locked")


@task(name="release", help={"hosts": "environment in hosts.yml",
                            "yes": "release without asking"})
@reports_errors
def lock_release(c, hosts=None, yes=False):
    """Release a stale deploy lock (left by a run that was killed)."""
    from bmms_fab import lock
    env = load_env(hosts)
    print(lock.release_stale(env, lambda what: yes or input(
        f"release the lock held by {what}? [y/N] ").strip().lower() == "y"))


def _lab(hosts):
    from bmms_fab import lab as lab_mod
    from bmms_fab.labctl import require_root
    require_root()
    return lab_mod.Lab(load_env(hosts or "lab"))


@task(name="up", help={"hosts": "environment to run as a lab (default: lab)"})
@reports_errors
def lab_up(c, hosts="lab"):
    """Boot one Debian 12 container per host of the lab environment (idempotent)."""
    import time
    from bmms_fab import labctl
    lab = _lab(hosts)
    t0 = time.monotonic()
    secrets_mod.init(lab.env)     # the lab's own secrets, generated once
    labctl.up(lab)
    print(f"lab: {len(lab.env.hosts)} hosts up in {time.monotonic() - t0:.1f}s "
          f"(known hosts: {lab.known_hosts})")


@task(name="down", help={"hosts": "lab environment (default: lab)"})
@reports_errors
def lab_down(c, hosts="lab"):
    """Stop and remove the lab: containers, mounts, namespaces, veths, bridge, apt proxy."""
    from bmms_fab import labctl
    labctl.down(_lab(hosts))
    print("lab: down, nothing left running")


@task(name="stop", help={"hosts": "lab environment (default: lab)"})
@reports_errors
def lab_stop(c, hosts="lab"):
    """Stop the lab's hosts but keep their changes for lab.start."""
    from bmms_fab import labctl
    labctl.stop(_lab(hosts))
    print("lab: stopped (changes kept; `inv lab.start` resumes)")


@task(name="start", help={"hosts": "lab environment (default: lab)"})
@reports_errors
def lab_start(c, hosts="lab"):
    """Start a stopped lab again, with each host's changes."""
    lab_up(c, hosts)


@task(name="status", help={"hosts": "lab environment (default: lab)"})
@reports_errors
def lab_status(c, hosts="lab"):
    """Show each lab host: up/down, address, systemd state."""
    from bmms_fab import labctl
    lab = _lab(hosts)
    rows = labctl.status(lab)
    states = labctl.systemd_states(lab, [r["host"] for r in rows if r["running"]])
    print(f"{'host':<10} {'address':<15} {'state':<6} systemd")
    for r in rows:
        print(f"{r['host']:<10} {r['address']:<15} {'up' if r['running'] else 'down':<6} "
              f"{states.get(r['host'], '-')}")


@task(name="backup", default=True,
      help={"hosts": "environment in hosts.yml",
            "verify": "restore into a scratch database and count rows before marking it good",
            "quiet": "print nothing on success (for cron; the log file has the line)"})
@reports_errors
def backup_run(c, hosts=None, verify=False, quiet=False):
    """Back up the database (from a replica), Redis and media to the backup host."""
    from bmms_fab import backupjob
    env = load_env(hosts)
    line = backupjob.run_once(env, verify=verify)
    if not quiet:
        print(line)


@task(name="cron", help={"hosts": "environment in hosts.yml",
                         "install": "write /etc/cron.d/bmms-fab-backup-ENV (as root)"})
@reports_errors
def backup_cron(c, hosts=None, install=False):
    """Print (or install) the crontab line of a nightly verified backup."""
    from bmms_fab import backupjob
    env = load_env(hosts)
    line = backupjob.cron_line(env)
    if not install:
        print(line)
        return
    path = backupjob.install_cron(env, line)
    print(f"installed {path}: {line}")


@task(name="list", help={"hosts": "environment in hosts.yml"})
@reports_errors
def backup_list(c, hosts=None):
    """List the backups on the backup host, with their status."""
    from bmms_fab import backupjob
    for row in backupjob.listing(load_env(hosts)):
        print(row)


@task(help={"hosts": "environment in hosts.yml", "backup": "backup id (see backup.list)",
            "redis": "also restore Redis", "media": "also restore media",
            "yes": "required outside the lab: this replaces the database"})
@reports_errors
def restore(c, hosts=None, backup=None, redis=False, media=False, yes=False):
    """Restore the database (and optionally Redis and media) from a backup."""
    from bmms_fab import restore as restore_mod
    env = load_env(hosts)
    restore_mod.restore(env, secrets_mod.load(env), backup, with_redis=redis,
                        with_media=media, yes=yes)


@task(name="promote", help={"hosts": "environment in hosts.yml",
                            "to": "the replica to promote (default: the first healthy one)"})
@reports_errors
def db_promote(c, hosts=None, to=None):
    """Promote a replica; repoint PgBouncer and replicas; fence the old primary."""
    from bmms_fab import failover
    env = load_env(hosts)
    result = failover.promote(env, secrets_mod.load(env), to)
    print(f"{result['new']} is the primary ({result['old']}: {result['fence']}); "
          f"`inv db.rejoin --hosts {env.name}` makes {result['old']} a replica again")


@task(name="rejoin", help={"hosts": "environment in hosts.yml",
                           "host": "the old primary (default: the fenced one)"})
@reports_errors
def db_rejoin(c, hosts=None, host=None):
    """Turn a fenced old primary into a streaming replica of the current primary."""
    from bmms_fab import failover
    env = load_env(hosts)
    failover.rejoin(env, secrets_mod.load(env), host)


@task(name="units", help={"hosts": "environment in hosts.yml"})
@reports_errors
def audit_units(c, hosts=None):
    """Print systemd's exposure score of every unit the tool writes, on every host."""
    from bmms_fab import audit
    env = load_env(hosts)
    worst = 0
    for host, rows in audit.scores(env).items():
        for unit, score, level in rows:
            print(f"{host:<10} {unit:<42} {score:>4.1f} {level}")
            worst = max(worst, audit.LEVELS.index(level) if level in audit.LEVELS else 9)
    if worst > audit.LEVELS.index("OK"):
        raise SystemExit(1)


audit_ns = Collection("audit")
audit_ns.add_task(audit_units)

backup_ns = Collection("backup")
for t_ in (backup_run, backup_cron, backup_list):
    backup_ns.add_task(t_)
db_ns = Collection("db")
db_ns.add_task(db_promote)
db_ns.add_task(db_rejoin)

lock_ns = Collection("lock")
lock_ns.add_task(lock_status)
lock_ns.add_task(lock_release)

lab_ns = Collection("lab")
for t_ in (lab_up, lab_down, lab_stop, lab_start, lab_status):
    lab_ns.add_task(t_)

secrets_ns = Collection("secrets")
secrets_ns.add_task(secrets_init)

ns = Collection(render, check, capacity, test, trust, configure, deploy, verify, demo,
                rolling_restart, rollback, restore)
ns.add_collection(secrets_ns)
ns.add_collection(lab_ns)
ns.add_collection(lock_ns)
ns.add_collection(backup_ns)
ns.add_collection(db_ns)
ns.add_collection(audit_ns)
