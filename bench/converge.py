"""Benchmark (not a test): cold, no-op and one-change converges of 10 templated files per host
over N simulated hosts. Each host is sshd in its own network namespace, chrooted into an overlay
of the lab's Debian base (no systemd: files only, no handlers).

    sudo .venv/bin/python bench/converge.py [--hosts 4,16,32]

Prints wall time, SSH round trips per host and controller CPU for each phase. Everything it
starts is stopped by PID and every mount/namespace/link removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jinja2  # noqa: E402

from bmms_fab import engine, executor, inventory  # noqa: E402
from bmms_fab import lab as lab_mod  # noqa: E402
from bmms_fab import labctl  # noqa: E402
from bmms_fab.plan import HostPlan, ManagedFile  # noqa: E402

BRIDGE = "bmmsbench0"
NET = "198.19.0"          # inside 198.18.0.0/15, apart from the lab's 198.18.x
TEMPLATE = jinja2.Template(
    "# {{ name }} file {{ i }}\nlisten = {{ address }}:{{ 8000 + i }}\nworkers = {{ i * 2 + 1 }}\n"
    "{% for k in range(20) %}option_{{ k }} = {{ (k * i) % 7 }}\n{% endfor %}",
    undefined=jinja2.StrictUndefined)


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


class Fleet:
    def __init__(self, n: int, work: Path, base: Path):
        self.n, self.work, self.base = n, work, base
        self.pids: list[int] = []
        self.mounts: list[Path] = []
        self.netns: list[str] = []
        self.key = work / "id_ed25519"
        self.known_hosts = work / "known_hosts"

    def address(self, i: int) -> str:
        return f"{NET}.{10 + i}"

    def up(self) -> list[executor.Target]:
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        lines = []
        for i in range(self.n):
            name, ns = f"b{i}", f"bmmsb-{i}"
            d = self.work / name
            upper, wk, root = d / "upper", d / "work", d / "root"
            for p in (upper, wk, root):
                p.mkdir(parents=True)
            sh("mount", "-t", "overlay", "overlay", "-o",
               f"lowerdir={self.base},upperdir={upper},workdir={wk}", str(root))
            self.mounts.append(root)
            for sub, how in (("dev", ["--bind", "/dev"]), ("proc", ["-t", "proc", "proc"])):
                sh("mount", *how, str(root / sub))
                self.mounts.append(root / sub)
            sh("ip", "netns", "add", ns)
            self.netns.append(ns)
            sh("ip", "link", "add", f"bvb-{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", f"bvb-{i}", "master", BRIDGE, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
               str(root / "etc/ssh/ssh_host_ed25519_key"))
            (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
            shutil.copy(f"{self.key}.pub", root / "root/.ssh/authorized_keys")
            (root / "run/sshd").mkdir(parents=True, exist_ok=True)
            (root / "etc/ssh/sshd_config.d/bench.conf").write_text(
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
                "MaxStartups 200\n")
            p = subprocess.Popen(["ip", "netns", "exec", ns, "chroot", str(root),
                                  "/usr/sbin/sshd", "-D", "-e"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            self.pids.append(p.pid)
            pub = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"{self.address(i)} {pub[0]} {pub[1]}\n")
        self.known_hosts.write_text("".join(lines))
        targets = [executor.Target(f"b{i}", self.address(i), identity_file=str(self.key),
                                   known_hosts=str(self.known_hosts)) for i in range(self.n)]
        deadline = time.monotonic() + 30
        for t in targets:
            while True:
                try:
                    executor.scan_key(t)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        return targets

    def down(self) -> None:
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                    os.waitpid(pid, os.WNOHANG)
                    time.sleep(0.05)
                except (ProcessLookupError, ChildProcessError):
                    break
        for m in reversed(self.mounts):
            sh("umount", "-l", str(m), check=False)
        for ns in self.netns:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", BRIDGE, check=False)


def plans_for(targets, version: dict[str, int]) -> dict[str, HostPlan]:
    out = {}
    for t in targets:
        files = tuple(ManagedFile(f"/etc/bench/f{i}.conf", TEMPLATE.render(
            name=t.name, address=t.address, i=i + version.get(t.name, 0) * (i == 0)).encode())
            for i in range(10))
        out[t.name] = HostPlan(t.name, files)
    return out


def measure(label, targets, plans, parallel):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    results = engine.converge(targets, plans, parallel=parallel,
                              printer=executor.Printer(quiet=True))
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    failed = [r for r in results.values() if r.status == "failed"]
    if failed:
        raise SystemExit(f"{label}: {failed[0].error}")
    trips = sum(r.round_trips for r in results.values()) / len(results)
    changed = sum(1 for r in results.values() if r.status == "changed")
    print(f"  {label:<10} {wall:6.2f} s wall  {trips:4.1f} round trips/host  "
          f"{cpu:5.2f} s controller CPU  {changed:>2} hosts changed")
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="4,16,32")
    ap.add_argument("--parallel", type=int, default=32)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, mounts)")
    lab = lab_mod.Lab(inventory.load(Path(__file__).resolve().parent.parent / "hosts.yml").env("lab"))
    labctl.ensure_base(lab)
    for n in [int(x) for x in args.hosts.split(",")]:
        work = Path(tempfile.mkdtemp(prefix="bmms-bench-"))
        fleet = Fleet(n, work, lab.base)
        try:
            targets = fleet.up()
            print(f"{n} hosts, 10 files each, parallel {min(args.parallel, n)}:")
            measure("cold", targets, plans_for(targets, {}), args.parallel)
            measure("no-op", targets, plans_for(targets, {}), args.parallel)
            measure("one-change", targets, plans_for(targets, {targets[0].name: 1}), args.parallel)
        finally:
            fleet.down()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
