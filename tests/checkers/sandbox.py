"""Run a real program against rendered files at their real paths, in a private mount and network
namespace (`unshare --mount --net`): the rendered directories are bind-mounted over /etc/...,
and the host's own inventory address is put on the private loopback. Nothing leaks out: the
namespaces die with the script."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


def run(script: str, *, binds: dict[str, Path] = (), addresses: tuple[str, ...] = (),
        timeout: int = 60) -> subprocess.CompletedProcess:
    """Run bash `script` with each target dir in `binds` replaced by the given source dir."""
    setup = ["set -euo pipefail", "mount --make-rprivate /", "ip link set lo up"]
    for addr in addresses:
        setup.append(f"ip addr add {shlex.quote(addr)}/32 dev lo")
    for target, source in dict(binds).items():
        setup.append(f"mkdir -p {shlex.quote(target)} 2>/dev/null || true")
        setup.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    full = "\n".join(setup) + "\n" + script
    return subprocess.run(["unshare", "--mount", "--net", "--fork", "bash", "-c", full],
                          capture_output=True, text=True, timeout=timeout)


def write_files(root: Path, files, prefix: str) -> Path:
    """Write the rendered ManagedFiles whose path starts with `prefix` under root (same names)."""
    root.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.path.startswith(prefix.rstrip("/") + "/"):
            target = root / f.path[len(prefix.rstrip("/")) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.content)
    return root
