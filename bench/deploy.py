"""Benchmark (not a test): wall time of a cold deploy of the lab (fresh hosts), of a no-op
deploy, and of an app-only release, with bytes sent per host.

    sudo .venv/bin/python bench/deploy.py [--keep]   # --keep: leave the lab up afterwards

The lab is torn down first (cold means packages, database, release: everything from nothing;
Debian packages come through the lab's apt cache, warm after the first run on a machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bmms_fab import deploy, executor, inventory, labctl  # noqa: E402
from bmms_fab import lab as lab_mod  # noqa: E402
from bmms_fab import secrets as secrets_mod  # noqa: E402


def run(label: str, env) -> deploy.Report:
    t0 = time.monotonic()
    report = deploy.deploy(env, printer=executor.Printer(io.StringIO()), log=lambda *_: None)
    wall = time.monotonic() - t0
    sent = ", ".join(f"{h} {b / 1e6:.2f} MB" for h, b in sorted(report.bytes_sent.items()))
    print(f"{label:<17} {wall:7.1f} s  {report.total:>4} changes  release {report.release}")
    print(f"{'':<17} sent: {sent or 'nothing'}")
    print(f"{'':<17} phases: " + ", ".join(f"{p} {s:.1f}s" for p, s in report.seconds.items()
                                           if p != "total"))
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    args = ap.parse_args()
    env = inventory.load(ROOT / "hosts.yml").env("lab")
    lab = lab_mod.Lab(env)
    secrets_mod.init(env)
    labctl.down(lab, log=lambda *_: None)
    t0 = time.monotonic()
    labctl.up(lab, log=lambda *_: None)
    print(f"{'lab.up':<17} {time.monotonic() - t0:7.1f} s  ({len(env.hosts)} hosts)")
    work = Path(tempfile.mkdtemp(prefix="bmms-bench-app-"))
    try:
        run("cold deploy", env)
        run("no-op deploy", env)
        app = work / "app"
        shutil.copytree(Path(env.base_dir) / env.app["path"], app,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        views = app / "bmms_demo/core/views.py"
        views.write_text(views.read_text() + "\n# bench: an app-only change\n")
        changed = dataclasses.replace(env, app=dict(env.app, path=str(app)))
        run("app-only release", changed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            labctl.down(lab, log=lambda *_: None)


if __name__ == "__main__":
    main()
