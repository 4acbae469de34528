"""Run the lab on this machine (root): build the base, bring hosts up and down.

Every process it starts is recorded by PID and stopped by that PID (checked against its command
line first, so a recycled PID is never killed). Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import lab as L
from .errors import BmmsError, StepError



def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (containers, namespaces, mounts): run with sudo")


class LabError(BmmsError):
    """The lab could not be brought up or down; names the host and step."""


def _run(argv: list[str], host: str = "lab", step: str | None = None,
         check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise StepError(host, step or " ".join(argv[:3]), " ".join(argv), r.returncode,
                        "\n".join(r.stderr.strip().splitlines()[-5:]))
    return r


def _exists_link(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return _run(argv, check=False).returncode == 0


def _netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def _is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


def _alive(pid_file: Path, must_contain: str) -> int | None:
    """The recorded PID if that process is still ours (its cmdline names what we started)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if must_contain in cmdline else None


def _stop_pid(pid_file: Path, must_contain: str, timeout: float = 30.0) -> bool:
    pid = _alive(pid_file, must_contain)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid_file, must_contain):
            time.sleep(0.2)
        if _alive(pid_file, must_contain):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def _systemd_hierarchies() -> list[Path]:
    """The cgroup hierarchies a container's systemd manages: the cgroup2 tree (unified mode at
    /sys/fs/cgroup, hybrid at /sys/fs/cgroup/unified) and the name=systemd v1 tree."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mnt, fstype, opts = line.split()[:4]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in opts):
            out.append(Path(mnt))
    return out


def _cgroups(h: L.LabHost) -> list[Path]:
    return [root / f"bmms-lab-{h.name}" for root in _systemd_hierarchies()]


def _remove_cgroups(h: L.LabHost) -> None:
    """rmdir the host's cgroup subtrees, deepest first (they are empty once it stopped)."""
    for top in _cgroups(h):
        if not top.exists():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in dirs + [top]:
            try:
                d.rmdir()
            except OSError:
                pass


def _start_daemon(argv: list[str], pid_file: Path, log_file: Path,
                  cgroups: list[Path] = ()) -> int:
    """Start a process in its own session (and, for a container, its own cgroups: systemd-nspawn
    puts the container under the cgroup it starts in, and two containers under one cgroup would
    share every unit's cgroup)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    for cg in cgroups:
        cg.mkdir(exist_ok=True)

    def enter_cgroups() -> None:
        for cg in cgroups:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    with open(log_file, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, preexec_fn=enter_cgroups if cgroups else None)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


# ---- the base image ----------------------------------------------------------------------------

def ensure_base(lab: L.Lab, log=print) -> None:
    """debootstrap once; later lab.up calls reuse the cached base."""
    if (lab.base / ".bmms-complete").exists():
        return
    tmp = lab.base.with_name(lab.base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log(f"lab: building the Debian {L.SUITE} base with debootstrap (once, ~1 min)...")
    _run(L.debootstrap_argv(tmp), step="debootstrap", timeout=1800)
    # every host gets its own SSH host key and machine id
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tmp / "etc/machine-id").write_text("")
    (tmp / "etc/apt/sources.list").write_text(f"deb {L.MIRROR} {L.SUITE} main\n")
    # a container has no console getty to offer; keep boots quiet and quick
    for unit in ("getty@tty1.service", "console-getty.service"):
        (tmp / "etc/systemd/system" / unit).unlink(missing_ok=True)
        os.symlink("/dev/null", tmp / "etc/systemd/system" / unit)
    (tmp / ".bmms-complete").write_text("ok\n")
    tmp.rename(lab.base)


def ensure_key(lab: L.Lab) -> str:
    lab.lab_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not lab.key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bmms-fab-lab",
              "-f", str(lab.key)], step="ssh-keygen")
    return lab.key.with_suffix(".pub").read_text()


# ---- network -----------------------------------------------------------------------------------

def ensure_bridge(lab: L.Lab) -> None:
    if not _exists_link(L.BRIDGE):
        for argv in L.bridge_argvs(lab):
            _run(argv, step="bridge")
    _run(["ip", "link", "set", L.BRIDGE, "up"], step="bridge")


def ensure_network(h: L.LabHost) -> None:
    if not _netns_exists(h.netns):
        _run(["ip", "netns", "add", h.netns], h.name, "netns")
    if not _exists_link("eth0", h.netns):
        if _exists_link(h.veth):
            _run(["ip", "link", "del", h.veth], h.name, "veth")
        for argv in L.network_argvs(h):
            _run(argv, h.name, "network")


def ensure_apt_proxy(lab: L.Lab) -> None:
    if _alive(lab.acng_pid_file, "apt-cacher-ng"):
        return
    conf = lab.acng_conf_dir
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree("/etc/apt-cacher-ng", conf)
    # its default Debian mirror list is unreachable here: name the one mirror that is
    (conf / "backends_debian").write_text(L.MIRROR + "/\n")
    lab.acng_cache.mkdir(parents=True, exist_ok=True)
    _start_daemon(L.acng_argv(lab), lab.acng_pid_file, lab.lab_dir / "log" / "apt-cacher-ng.out")
    _wait_tcp(lab.bridge_address, L.APT_PROXY_PORT, 20, "apt-cacher-ng", "lab")


# ---- hosts -------------------------------------------------------------------------------------

def _write_host_files(lab: L.Lab, h: L.LabHost, pubkey: str) -> None:
    root = h.root
    for path, (content, mode) in L.host_files(lab, h, pubkey).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
    (root / "root/.ssh").chmod(0o700)
    if not (root / "etc/ssh/ssh_host_ed25519_key").exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{h.name}",
              "-f", str(root / "etc/ssh/ssh_host_ed25519_key")], h.name, "host key")
    mid = root / "etc/machine-id"
    if not mid.read_text().strip():
        mid.write_text(os.urandom(16).hex() + "\n")


def ensure_host(lab: L.Lab, h: L.LabHost, pubkey: str) -> None:
    ensure_network(h)
    for d in (h.upper, h.work, h.root):
        d.mkdir(parents=True, exist_ok=True)
    if not _is_mounted(h.root):
        _run(L.overlay_argv(lab, h), h.name, "overlay mount")
    if not _alive(h.pid_file, f"--machine={h.name}"):
        _write_host_files(lab, h, pubkey)
        _remove_cgroups(h)      # leftovers of an earlier boot
        _start_daemon(L.nspawn_argv(h), h.pid_file, h.log_file, _cgroups(h))


def _wait_tcp(address: str, port: int, timeout: float, what: str, host: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise StepError(host, f"wait for {what}", f"{address}:{port} not answering "
                                f"after {timeout:.0f}s ({exc})") from None
            time.sleep(0.3)


def write_known_hosts(lab: L.Lab) -> None:
    lines = []
    for h in lab.hosts():
        pub = (h.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
        lines.append(L.known_hosts_line(h.host, pub))
    tmp = lab.known_hosts.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(lab.known_hosts)


def up(lab: L.Lab, log=print) -> None:
    """Bring every host up (idempotent). On failure, tear down what is there and re-raise."""
    problems = L.validate(lab)
    if problems:
        raise LabError("environment cannot run as a lab:\n  " + "\n  ".join(problems))
    try:
        ensure_base(lab, log)
        pubkey = ensure_key(lab)
        ensure_bridge(lab)
        ensure_apt_proxy(lab)
        for h in lab.hosts():
            ensure_host(lab, h, pubkey)
        for h in lab.hosts():
            _wait_for_boot(h)
        write_known_hosts(lab)
    except BaseException:
        log("lab: bring-up failed; cleaning up")
        down(lab, log=lambda *_: None)
        raise


def _wait_for_boot(h: L.LabHost, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not _alive(h.pid_file, f"--machine={h.name}"):
        raise StepError(h.name, "boot", f"systemd-nspawn exited; see {h.log_file}")
    _wait_tcp(h.host.address, h.host.port, max(5.0, deadline - time.monotonic()), "sshd", h.name)


def stop(lab: L.Lab, log=print) -> None:
    """Stop every host, keeping each host's own changes for the next lab.up/lab.start."""
    _teardown(lab, wipe=False, log=log)


def down(lab: L.Lab, log=print) -> None:
    """Stop and remove everything: containers, mounts, namespaces, veths, bridge, proxy."""
    _teardown(lab, wipe=True, log=log)


def _teardown(lab: L.Lab, wipe: bool, log=print) -> None:
    errors = []
    hosts = lab.hosts()
    running = [h for h in hosts if _alive(h.pid_file, f"--machine={h.name}")]
    for h in running:   # SIGTERM all first so they shut down in parallel
        os.kill(_alive(h.pid_file, f"--machine={h.name}") or 0, signal.SIGTERM)
    if running:
        log(f"lab: stopping {', '.join(h.name for h in running)}")
    for h in hosts:
        try:
            _stop_pid(h.pid_file, f"--machine={h.name}")
            _remove_cgroups(h)
            if _is_mounted(h.root):
                r = _run(["umount", str(h.root)], h.name, "umount", check=False)
                if r.returncode != 0:
                    _run(["umount", "-l", str(h.root)], h.name, "umount")
            if _netns_exists(h.netns):
                _run(["ip", "netns", "del", h.netns], h.name, "netns del")
            if _exists_link(h.veth):   # normally gone with its namespace already
                _run(["ip", "link", "del", h.veth], h.name, "veth del", check=False)
            if wipe and h.dir.exists():
                shutil.rmtree(h.dir)
        except BmmsError as exc:
            errors.append(str(exc))
    _stop_pid(lab.acng_pid_file, "apt-cacher-ng")
    if _exists_link(L.BRIDGE):
        _run(["ip", "link", "del", L.BRIDGE], step="bridge del", check=False)
    if errors:
        raise LabError("lab teardown incomplete:\n" + "\n".join(errors))


def status(lab: L.Lab) -> list[dict]:
    """Per host: up/down (by recorded PID), address, mounted."""
    rows = []
    for h in lab.hosts():
        rows.append({"host": h.name, "address": h.host.address,
                     "running": bool(_alive(h.pid_file, f"--machine={h.name}")),
                     "mounted": _is_mounted(h.root), "netns": _netns_exists(h.netns)})
    return rows


def systemd_states(lab: L.Lab, names: list[str]) -> dict[str, str]:
    """`systemctl is-system-running` inside each running host (via its PID 1 namespaces)."""
    out = {}
    for h in lab.hosts():
        if h.name not in names:
            continue
        pid = _alive(h.pid_file, f"--machine={h.name}")
        leader = _container_init(pid) if pid else None
        if leader is None:
            out[h.name] = "?"
            continue
        r = _run(["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p",
                  "systemctl", "is-system-running"], h.name, "status", check=False)
        out[h.name] = (r.stdout.strip() or r.stderr.strip() or "?")
    return out


def _container_init(nspawn_pid: int) -> int | None:
    """PID (on this machine) of the container's systemd: nspawn's child."""
    try:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None
