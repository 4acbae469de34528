"""Build a release on the control machine: a wheelhouse holding the app and every dependency,
resolved for the hosts' Python and platform, so hosts install offline. Built once per release id
and cached under build/releases/<id>/.

The release id ties to the app's VCS revision: the last commit that touched the app's directory
(plus a content hash when the directory has uncommitted changes); without VCS, a content hash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import PROJECT_ROOT
from .errors import BmmsError
from .inventory import Environment

HOST_PYTHON = "3.11.2"         # Debian 12's python3
# Environment markers are evaluated for the hosts, not for this machine's Python.
HOST_MARKERS = {"python_version": "3.11", "python_full_version": HOST_PYTHON,
                "implementation_name": "cpython", "implementation_version": HOST_PYTHON,
                "platform_python_implementation": "CPython", "platform_machine": "x86_64",
                "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
                "platform_release": "", "platform_version": ""}
HOST_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_24_x86_64",
                  "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64",
                  "manylinux_2_35_x86_64", "linux_x86_64")
BUILD_DIR = Path(os.environ.get("BMMS_BUILD_DIR", PROJECT_ROOT / "build"))
IGNORED = {"__pycache__", ".git", "build", "dist", ".venv", "node_modules"}


class ReleaseError(BmmsError):
    """The release could not be built; nothing was sent to any host."""


@dataclass(frozen=True)
class Release:
    id: str
    dir: Path
    wheels: dict[str, str]          # file name -> sha256
    app_wheel: str
    revision: str | None

    @property
    def wheelhouse(self) -> Path:
        return self.dir / "wheels"


def source_dir(env: Environment) -> Path:
    app = env.app
    if app is None:
        raise ReleaseError(f"{env.name}: no 'app' section in the inventory")
    if app.get("git"):
        return _checkout(app["git"], app.get("revision") or "HEAD")
    src = Path(app["path"])
    return src if src.is_absolute() else (env.base_dir / src).resolve()


def _checkout(url: str, revision: str) -> Path:
    dest = BUILD_DIR / "src" / hashlib.sha256(url.encode()).hexdigest()[:12]
    if not dest.exists():
        _run(["git", "clone", "--quiet", url, str(dest)], "git clone")
    _run(["git", "-C", str(dest), "fetch", "--quiet", "origin"], "git fetch")
    _run(["git", "-C", str(dest), "checkout", "--quiet", "--detach", revision], "git checkout")
    return dest


def _run(argv: list[str], step: str, **kw) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
        raise ReleaseError(f"build: {step} failed (exit {r.returncode}):\n{tail}")
    return r.stdout


def content_hash(src: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file()
                       and not IGNORED & set(p.relative_to(src).parts)
                       and not p.name.endswith((".pyc", ".egg-info"))
                       and ".egg-info" not in str(p)):
        h.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def release_id(src: Path) -> tuple[str, str | None]:
    """(id, revision). Deterministic: the same source gives the same id."""
    chash = content_hash(src)[:10]
    git = subprocess.run(["git", "-C", str(src), "log", "-1", "--format=%h", "--", "."],
                         capture_output=True, text=True)
    rev = git.stdout.strip() if git.returncode == 0 else ""
    if not rev:
        return f"src-{chash}", None
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."],
                           capture_output=True, text=True).stdout.strip()
    return (f"{rev}-dirty-{chash[:8]}" if dirty else rev), rev


def build(env: Environment, log=print) -> Release:
    """Build (or reuse) the release of the environment's app."""
    src = source_dir(env)
    req = src / (env.app["requirements"] or "requirements.txt")
    if not (src / "pyproject.toml").exists() and not (src / "setup.py").exists():
        raise ReleaseError(f"{src}: not an installable Python project (no pyproject.toml)")
    if not req.exists():
        raise ReleaseError(f"{req}: requirements file not found")
    source_id, rev = release_id(src)
    out = BUILD_DIR / "releases" / source_id
    manifest = out / "release.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        return Release(data["id"], out, data["wheels"], data["app_wheel"], data["revision"])
    log(f"build: release of {source_id} from {src}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    wheels = tmp / "wheels"
    wheels.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    env_vars = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
    copy = tmp / "src"      # build from a clean copy: never write into the app's tree
    shutil.copytree(src, copy, ignore=lambda d, names: [n for n in names if n in IGNORED
                                                        or n.endswith(".egg-info")])
    _run(pip + ["wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(copy)],
         "app wheel", env=env_vars)
    shutil.rmtree(copy)
    app_wheel = next(p.name for p in wheels.glob("*.whl"))
    plat = [a for p in HOST_PLATFORMS for a in ("--platform", p)]
    download = pip + ["download", "--quiet", "--only-binary=:all:", "--python-version",
                      HOST_PYTHON, "--implementation", "cp", *plat, "--dest", str(wheels)]
    _run(download + ["-r", str(req)], "dependency wheels (for the hosts' Python " + HOST_PYTHON + ")")
    # pip judges some markers (python_full_version) by this machine's Python: close the set
    # of wheels under the hosts' own markers.
    for _ in range(10):
        missing = missing_requirements(wheels)
        if not missing:
            break
        _run(download + missing, "dependency wheels for the hosts' markers")
    else:
        raise ReleaseError(f"build: cannot complete the wheelhouse: {missing_requirements(wheels)}")
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(wheels.glob("*.whl"))}
    # the id names the source revision and the exact set of wheels installed with it
    rid = f"{source_id}-{hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:6]}"
    (tmp / "release.json").write_text(json.dumps(
        {"id": rid, "revision": rev, "app_wheel": app_wheel, "wheels": sums}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return Release(rid, out, sums, app_wheel, rev)


def _metadata(wheel: Path) -> str:
    import zipfile
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name).decode()


def missing_requirements(wheels: Path) -> list[str]:
    """Requirements of the wheels (their markers evaluated for the hosts) that no wheel meets."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    have: dict[str, Version] = {}
    reqs: list[tuple[Requirement, set[str]]] = []
    for w in sorted(wheels.glob("*.whl")):
        parts = w.name.split("-")
        have[canonicalize_name(parts[0])] = Version(parts[1])
    extras_wanted: dict[str, set[str]] = {}
    for w in sorted(wheels.glob("*.whl")):
        for line in _metadata(w).splitlines():
            if line.startswith("Requires-Dist:"):
                reqs.append((Requirement(line.split(":", 1)[1].strip()),
                             extras_wanted.setdefault(canonicalize_name(w.name.split("-")[0]),
                                                      set())))
    missing = []
    for req, extras in reqs:
        envs = [dict(HOST_MARKERS, extra=e) for e in (extras or {""})] or [dict(HOST_MARKERS, extra="")]
        if req.marker is not None and not any(req.marker.evaluate(e) for e in envs):
            continue
        name = canonicalize_name(req.name)
        if name not in have or not req.specifier.contains(have[name], prereleases=True):
            missing.append(str(Requirement(f"{req.name}{req.specifier}")))
    return sorted(set(missing))
