"""Runs last: lab.down leaves nothing behind, and a lab.up that fails half-way cleans up."""

import os
import subprocess
from pathlib import Path

import pytest

from bmms_fab import lab as lab_mod
from bmms_fab import labctl


def leftovers(lab):
    """Everything of this lab still on the machine: processes (by recorded PID), mounts,
    namespaces, links."""
    found = []
    for h in lab.hosts():
        if labctl._alive(h.pid_file, f"--machine={h.name}"):
            found.append(f"process {h.name}")
        if h.root.exists() and os.path.ismount(h.root):
            found.append(f"mount {h.root}")
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {l.split()[1]}" for l in mounts.splitlines() if str(lab.lab_dir) in l]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {l.split()[0]}" for l in netns.splitlines() if l.startswith("bmms-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {l.split(':')[1].strip()}" for l in links.splitlines()
              if l.split(":")[1].strip().split("@")[0].startswith(("bv-", lab_mod.BRIDGE))]
    found += [f"cgroup {c}" for h in lab.hosts() for c in labctl._cgroups(h) if c.exists()]
    if labctl._alive(lab.acng_pid_file, "apt-cacher-ng"):
        found.append("apt-cacher-ng")
    return found


def test_down_leaves_nothing_behind(lab):
    assert leftovers(lab)            # it was up: the check sees things when they are there
    labctl.down(lab, log=lambda *_: None)
    assert leftovers(lab) == []
    assert not any(h.dir.exists() for h in lab.hosts())   # host changes wiped


def test_up_that_fails_half_way_cleans_up(lab):
    broken = lab.hosts()[3]
    broken.dir.mkdir(parents=True, exist_ok=True)
    broken.root.write_text("not a directory")     # the 4th host cannot be set up
    with pytest.raises(FileExistsError):
        labctl.up(lab, log=lambda *_: None)
    assert leftovers(lab) == []
    assert not broken.dir.exists()
