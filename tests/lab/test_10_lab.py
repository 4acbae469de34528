"""The lab itself: real Debian hosts with systemd as PID 1, their own addresses, strict SSH."""

from bmms_fab import labctl
from tests.lab.conftest import ssh


def test_every_host_boots_with_systemd(lab, targets):
    rows = labctl.status(lab)
    assert all(r["running"] and r["mounted"] and r["netns"] for r in rows), rows
    states = labctl.systemd_states(lab, [r["host"] for r in rows])
    assert set(states.values()) <= {"running", "degraded"} and "running" in states.values(), states
    for t in targets:
        out = ssh(t, "cat /etc/os-release; ps -p 1 -o comm=; hostname; ip -4 -o addr show eth0")
        assert 'VERSION_CODENAME=bookworm' in out
        assert "\nsystemd\n" in out and f"\n{t.name}\n" in out and f"{t.address}/" in out


def test_hosts_reach_each_other_by_name_and_the_proxy(lab, targets):
    app1 = next(t for t in targets if t.name == "app1")
    out = ssh(app1, "getent hosts db1 mon1; curl -s -o /dev/null -w '%{http_code}' "
                    "http://198.18.0.1:3142/ || true")
    assert "198.18.0.21" in out and "198.18.0.41" in out
    # hosts have no route anywhere else
    out = ssh(app1, "ip route; curl -s -m 3 -o /dev/null http://deb.debian.org/ && echo LEAK || echo isolated")
    assert "default" not in out.split("isolated")[0] and "isolated" in out


def test_apt_installs_through_the_proxy(lab, targets):
    db3 = next(t for t in targets if t.name == "db3")
    out = ssh(db3, "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
                   "apt-get install -y -q less >/dev/null && dpkg -s less | grep Status")
    assert "install ok installed" in out


def test_changes_survive_stop_and_start(lab, targets):
    db3 = next(t for t in targets if t.name == "db3")
    ssh(db3, "echo kept > /root/lab-marker")
    labctl.stop(lab, log=lambda *_: None)
    assert not any(r["running"] for r in labctl.status(lab))
    labctl.up(lab, log=lambda *_: None)
    assert ssh(db3, "cat /root/lab-marker").strip() == "kept"
    assert ssh(db3, "dpkg -s less | grep -c 'install ok'").strip() == "1"
    ssh(db3, "rm /root/lab-marker")


def test_each_host_has_its_own_cgroup_tree(lab, targets):
    """Same-named units on two hosts must not share a cgroup (systemd-nspawn nests a container
    under the cgroup it was started in)."""
    roots = set()
    for t in targets:
        roots.add(ssh(t, "cat /proc/1/cgroup | grep '^0::'").strip())
        ssh(t, "systemd-run --quiet --unit=bmms-cgroup-probe sleep 30")
    try:
        app1 = next(t for t in targets if t.name == "app1")
        # from inside app1 only its own probe is visible, not the nine others
        out = ssh(app1, "ls -d /sys/fs/cgroup/unified/system.slice/bmms-cgroup-probe.service "
                        "/sys/fs/cgroup/system.slice/bmms-cgroup-probe.service 2>/dev/null | head -1")
        probe = out.strip()
        assert probe, "probe unit has no cgroup"
        procs = ssh(app1, f"cat {probe}/cgroup.procs").split()
        assert len(procs) == 1, procs
    finally:
        for t in targets:
            ssh(t, "systemctl stop bmms-cgroup-probe 2>/dev/null; true")
