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


secrets_ns = Collection("secrets")
secrets_ns.add_task(secrets_init)

ns = Collection(render, check, capacity, test)
ns.add_collection(secrets_ns)
