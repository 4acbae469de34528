"""The lab: one systemd-nspawn container per host of an environment, on this machine.

Pure part: names, paths, the files written into each host, and the argv of every command.
`labctl` runs them. Nothing here touches the system.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from .inventory import Environment, Host

LAB_DIR = Path(os.environ.get("BMMS_LAB_DIR", "/var/lib/bmms-fab/lab"))
CACHE_DIR = Path(os.environ.get("BMMS_CACHE_DIR", "/var/cache/bmms-fab"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "sudo",
                 "iproute2", "procps", "curl", "ca-certificates", "nftables", "netbase")
BRIDGE = "bmmsbr0"
LAB_NET = ipaddress.ip_network("198.18.0.0/15")
APT_PROXY_PORT = 3142


@dataclass(frozen=True)
class LabHost:
    """Where one lab host lives on this machine."""

    host: Host
    lab_dir: Path

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def netns(self) -> str:
        return f"bmms-{self.name}"

    @property
    def veth(self) -> str:
        return f"bv-{self.name}"[:15]

    @property
    def dir(self) -> Path:
        return self.lab_dir / "hosts" / self.name

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def pid_file(self) -> Path:
        return self.lab_dir / "run" / f"{self.name}.nspawn.pid"

    @property
    def log_file(self) -> Path:
        return self.lab_dir / "log" / f"{self.name}.nspawn.log"


@dataclass(frozen=True)
class Lab:
    env: Environment
    lab_dir: Path = LAB_DIR
    cache_dir: Path = CACHE_DIR

    @property
    def base(self) -> Path:
        return self.cache_dir / f"lab-base-{SUITE}"

    @property
    def bridge_address(self) -> str:
        return self.env.control_address or str(next(LAB_NET.hosts()))

    @property
    def key(self) -> Path:
        return self.lab_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.lab_dir / "known_hosts"

    @property
    def acng_pid_file(self) -> Path:
        return self.lab_dir / "run" / "apt-cacher-ng.pid"

    @property
    def acng_conf_dir(self) -> Path:
        return self.lab_dir / "apt-cacher-ng"

    @property
    def acng_cache(self) -> Path:
        return self.cache_dir / "apt-cacher-ng"

    def hosts(self) -> list[LabHost]:
        return [LabHost(h, self.lab_dir) for h in self.env.hosts]


def validate(lab: Lab) -> list[str]:
    """Why this environment cannot be a lab (empty when it can)."""
    problems = []
    for h in lab.env.hosts:
        try:
            ok = ipaddress.ip_address(h.address) in LAB_NET
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"{h.name}: address {h.address} is not in {LAB_NET} (lab hosts only)")
        if len(f"bv-{h.name}") > 15:
            problems.append(f"{h.name}: host name too long for a lab interface (max 12 chars)")
    if ipaddress.ip_address(lab.bridge_address) not in LAB_NET:
        problems.append(f"control_address {lab.bridge_address} is not in {LAB_NET}")
    return problems


# ---- argv builders ---------------------------------------------------------------------------

def debootstrap_argv(target: Path) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
            str(target), MIRROR]


def bridge_argvs(lab: Lab) -> list[list[str]]:
    return [["ip", "link", "add", BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", f"{lab.bridge_address}/{LAB_NET.prefixlen}", "dev", BRIDGE],
            ["ip", "link", "set", BRIDGE, "up"]]


def network_argvs(h: LabHost) -> list[list[str]]:
    """Commands that give a host its namespace, veth into the bridge and address."""
    return [["ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0",
             "netns", h.netns],
            ["ip", "link", "set", h.veth, "master", BRIDGE, "up"],
            ["ip", "-n", h.netns, "addr", "add", f"{h.host.address}/{LAB_NET.prefixlen}",
             "dev", "eth0"],
            ["ip", "-n", h.netns, "link", "set", "eth0", "up"],
            ["ip", "-n", h.netns, "link", "set", "lo", "up"]]


def overlay_argv(lab: Lab, h: LabHost) -> list[str]:
    return ["mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={lab.base},upperdir={h.upper},workdir={h.work}", str(h.root)]


def nspawn_argv(h: LabHost) -> list[str]:
    return ["systemd-nspawn", "-D", str(h.root), "--boot", "--register=no", "--keep-unit",
            f"--machine={h.name}", f"--network-namespace-path=/run/netns/{h.netns}",
            "--console=passive", "--private-users=no", "--resolv-conf=off", "--timezone=off",
            "--link-journal=no",
            # its own network namespace: it may manage its own firewall (nftables)
            "--capability=CAP_NET_ADMIN"]


def acng_argv(lab: Lab) -> list[str]:
    return ["/usr/sbin/apt-cacher-ng", "-c", str(lab.acng_conf_dir), "ForeGround=1",
            f"BindAddress={lab.bridge_address}", f"Port={APT_PROXY_PORT}",
            f"CacheDir={lab.acng_cache}", f"LogDir={lab.lab_dir / 'log'}",
            f"PidFile={lab.lab_dir / 'run' / 'apt-cacher-ng.inner.pid'}",
            f"SocketPath={lab.lab_dir / 'run' / 'apt-cacher-ng.socket'}"]


# ---- files written into each host before it boots ---------------------------------------------

def etc_hosts(lab: Lab) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback", ""]
    lines += [f"{h.address} {h.name} {h.name}.{lab.env.domain}" for h in lab.env.hosts]
    lines.append(f"{lab.bridge_address} control")
    return "\n".join(lines) + "\n"


SSHD_CONFIG = """\
# Written by bmms-fab lab.up
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
"""


def host_files(lab: Lab, h: LabHost, pubkey: str) -> dict[str, tuple[str, int]]:
    """path inside the host -> (content, mode), written at every lab.up."""
    from .roles.common import apt_proxy_file
    files = {
        "/etc/hostname": (h.name + "\n", 0o644),
        "/etc/hosts": (etc_hosts(lab), 0o644),
        "/etc/ssh/sshd_config.d/bmms-lab.conf": (SSHD_CONFIG, 0o644),
        "/root/.ssh/authorized_keys": (pubkey.strip() + "\n", 0o600),
    }
    if lab.env.apt_proxy:
        f = apt_proxy_file(lab.env.apt_proxy)
        files[f.path] = (f.content.decode(), f.mode)
    return files


def known_hosts_line(h: Host, host_pubkey: str) -> str:
    key_type, key_b64 = host_pubkey.split()[:2]
    target = h.address if h.port == 22 else f"[{h.address}]:{h.port}"
    return f"{target} {key_type} {key_b64}\n"
