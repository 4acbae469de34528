"""The only module that touches Fabric/paramiko: connections with verified host keys, commands,
the remote agent, file uploads, and running one function per host in parallel."""

from __future__ import annotations

import base64
import hashlib
import json
import select
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko
from fabric import Config, Connection

from . import agent as agent_module
from .errors import BmmsError, StepError
from .inventory import Environment

AGENT_SOURCE = Path(agent_module.__file__).read_bytes()
AGENT_CMD = ("python3 -c 'import sys;n=int(sys.argv[1]);d=sys.stdin.buffer.read();"
             "g={\"__name__\":\"bmms_agent\"};exec(compile(d[:n],\"bmms-agent\",\"exec\"),g);"
             "g[\"main\"](d[n:].decode())' ")


class HostKeyError(BmmsError):
    """A host's key is unknown or does not match known_hosts."""


@dataclass(frozen=True)
class Target:
    """How to reach one host."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    identity_file: str | None = None
    known_hosts: str = "~/.config/bmms-fab/known_hosts"
    connect_timeout: int = 10

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts).expanduser()

    @property
    def key_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def targets(env: Environment, names: list[str] | None = None) -> list[Target]:
    ssh = env.ssh
    base = env.base_dir

    def resolve(p: str | None) -> str | None:
        if not p:
            return None
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else base / path)

    out = [Target(h.name, h.address, h.port, h.user, resolve(ssh["identity_file"]),
                  resolve(ssh["known_hosts"]), ssh["connect_timeout"]) for h in env.hosts]
    if names:
        unknown = set(names) - {t.name for t in out}
        if unknown:
            raise BmmsError(f"--limit names unknown host(s): {', '.join(sorted(unknown))}")
        out = [t for t in out if t.name in names]
    return out


class Printer:
    """Thread-safe output: every line prefixed by its host."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.lock = threading.Lock()

    def __call__(self, host: str, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            for line in text.rstrip("\n").splitlines() or [""]:
                self.stream.write(f"[{host}] {line}\n")
            self.stream.flush()


class Session:
    """An SSH connection to one host. Commands run as root (through `sudo -n` for other users)."""

    def __init__(self, target: Target):
        self.target = target
        self.round_trips = 0
        self.conn: Connection | None = None

    def open(self) -> "Session":
        t = self.target
        kw: dict = {"banner_timeout": t.connect_timeout,
                    "auth_timeout": t.connect_timeout}
        if t.identity_file:
            kw.update(key_filename=t.identity_file, look_for_keys=False, allow_agent=False)
        conn = Connection(t.address, user=t.user, port=t.port, connect_timeout=t.connect_timeout,
                          connect_kwargs=kw, config=Config(overrides={"load_ssh_configs": False}))
        # Fabric trusts any host key (AutoAddPolicy). We trust only known_hosts.
        client = paramiko.SSHClient()
        if not t.known_hosts_path.exists():
            raise HostKeyError(f"{t.name}: no known_hosts file {t.known_hosts_path}; "
                               f"run `inv trust --hosts ENV` first")
        client.load_host_keys(str(t.known_hosts_path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.client = client
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"{t.name}: HOST KEY MISMATCH for {t.key_name}: got "
                f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}. "
                f"Refusing to connect (possible man-in-the-middle).") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(f"{t.name}: {t.key_name} is not in {t.known_hosts_path}; "
                                   f"run `inv trust --hosts ENV`") from None
            raise StepError(t.name, "connect", str(exc)) from None
        except (OSError, socket.timeout) as exc:
            raise StepError(t.name, "connect", f"{t.address}:{t.port}: {exc}") from None
        self.conn = conn
        return self

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> "Session":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def as_root(self, command: str) -> str:
        return command if self.target.user == "root" else f"sudo -n -- {command}"

    def exec(self, command: str, stdin: bytes = b"", timeout: float | None = None,
             on_line: Callable[[str], None] | None = None) -> tuple[int, bytes, bytes]:
        """Run one command (as root); stdin is sent and closed. One round trip."""
        assert self.conn is not None, "session not open"
        transport = self.conn.client.get_transport()
        chan = transport.open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.exec_command(self.as_root(command))
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        pending = b""
        while not chan.exit_status_ready() or chan.recv_ready() or chan.recv_stderr_ready():
            if chan.recv_ready():
                data = chan.recv(65536)
                out += data
                if on_line:
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for l in lines:
                        on_line(l.decode(errors="replace"))
            elif chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            else:
                select.select([chan], [], [], 0.2)
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if on_line and pending:
            on_line(pending.decode(errors="replace"))
        code = chan.recv_exit_status()
        chan.close()
        self.round_trips += 1
        return code, bytes(out), bytes(err)

    def run(self, command: str, step: str, stdin: bytes = b"", timeout: float | None = None,
            on_line: Callable[[str], None] | None = None, check: bool = True) -> str:
        """Run a command; raise StepError naming host, step, exit code and stderr tail."""
        code, out, err = self.exec(command, stdin, timeout, on_line)
        if check and code != 0:
            tail = "\n".join(err.decode(errors="replace").strip().splitlines()[-10:])
            if not tail:
                tail = "\n".join(out.decode(errors="replace").strip().splitlines()[-10:])
            raise StepError(self.target.name, step, "command failed", code, tail)
        return out.decode(errors="replace")

    def agent(self, op: str, payload: dict) -> dict:
        """Call the remote agent (bmms_fab.agent) with a JSON payload on stdin."""
        data = AGENT_SOURCE + json.dumps({"op": op, "payload": payload}).encode()
        code, out, err = self.exec(AGENT_CMD + str(len(AGENT_SOURCE)), data)
        if code != 0:
            raise StepError(self.target.name, f"agent {op}", "remote agent failed", code,
                            "\n".join(err.decode(errors="replace").strip().splitlines()[-10:]))
        return json.loads(out)

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        """Upload a file (SFTP) to a path the SSH user can write."""
        assert self.conn is not None
        sftp = self.conn.sftp()
        sftp.put(str(local), remote)
        sftp.chmod(remote, mode)
        self.round_trips += 1


def pipe(src: Session, src_cmd: str, dst: Session, dst_cmd: str, step: str,
         chunk: int = 1 << 20) -> int:
    """Stream src_cmd's stdout into dst_cmd's stdin (host to host through this machine, in
    chunks). Returns bytes moved; raises StepError if either side fails."""
    a = src.conn.client.get_transport().open_session()
    b = dst.conn.client.get_transport().open_session()
    a.exec_command(src.as_root(src_cmd))
    b.exec_command(dst.as_root(dst_cmd))
    a.shutdown_write()
    moved, err_a = 0, bytearray()
    while True:
        data = a.recv(chunk)
        if not data:
            break
        b.sendall(data)
        moved += len(data)
        while a.recv_stderr_ready():
            err_a += a.recv_stderr(65536)
    b.shutdown_write()
    code_a, code_b = a.recv_exit_status(), b.recv_exit_status()
    while a.recv_stderr_ready():
        err_a += a.recv_stderr(65536)
    err_b = b.recv_stderr(65536) if b.recv_stderr_ready() else b""
    a.close(); b.close()
    src.round_trips += 1; dst.round_trips += 1
    if code_a != 0:
        raise StepError(src.target.name, step, f"`{src_cmd}` failed", code_a, err_a.decode()[-800:])
    if code_b != 0:
        raise StepError(dst.target.name, step, f"`{dst_cmd}` failed", code_b, err_b.decode()[-800:])
    return moved


@dataclass
class HostResult:
    host: str
    status: str = "ok"               # ok | changed | failed
    changed: list[str] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    round_trips: int = 0
    error: BmmsError | None = None
    data: dict = field(default_factory=dict)


def for_each(targets_: list[Target], fn: Callable[[Session, HostResult], None],
             parallel: int = 16, printer: Printer | None = None) -> dict[str, HostResult]:
    """Open a session per host and run fn on each, at most `parallel` at a time."""
    printer = printer or Printer()

    def one(t: Target) -> HostResult:
        result = HostResult(t.name)
        start = time.monotonic()
        session = Session(t)
        try:
            session.open()
            fn(session, result)
        except BmmsError as exc:
            result.status, result.error = "failed", exc
            printer(t.name, f"FAILED: {exc}")
        except Exception as exc:  # a bug or an unexpected SSH failure: still name the host
            result.status = "failed"
            result.error = StepError(t.name, "unexpected", f"{exc.__class__.__name__}: {exc}")
            printer(t.name, f"FAILED: {result.error}")
        finally:
            session.close()
            result.seconds = time.monotonic() - start
            result.round_trips = session.round_trips
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets_) or 1))) as pool:
        results = list(pool.map(one, targets_))
    return {r.host: r for r in results}


def summary(results: dict[str, HostResult]) -> str:
    lines = [f"{'host':<12} {'result':<8} {'files':>5}  {'time':>6}  handlers / error"]
    for r in results.values():
        detail = ", ".join(r.handlers) or "-"
        if r.error is not None:
            detail = str(r.error).splitlines()[0]
        lines.append(f"{r.host:<12} {r.status:<8} {len(r.changed):>5}  {r.seconds:>5.2f}s  {detail}")
    counts = {s: sum(1 for r in results.values() if r.status == s)
              for s in ("ok", "changed", "failed")}
    lines.append(f"{len(results)} hosts: {counts['ok']} ok, {counts['changed']} changed, "
                 f"{counts['failed']} failed")
    return "\n".join(lines)


# ---- host keys ---------------------------------------------------------------------------------

def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return f"{key.get_name()} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def scan_key(t: Target) -> paramiko.PKey:
    """The host's SSH key, without authenticating."""
    try:
        sock = socket.create_connection((t.address, t.port), timeout=t.connect_timeout)
    except OSError as exc:
        raise StepError(t.name, "key scan", f"{t.address}:{t.port}: {exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=t.connect_timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def trust(targets_: list[Target], confirm: Callable[[str], bool]) -> list[str]:
    """Record each host's key in known_hosts after `confirm(message)` says yes.
    A key that differs from the recorded one is never replaced: that is an error."""
    lines = []
    for t in targets_:
        key = scan_key(t)
        path = t.known_hosts_path
        known = paramiko.HostKeys(str(path)) if path.exists() else paramiko.HostKeys()
        recorded = known.lookup(t.key_name)
        if recorded and key.get_name() in recorded:
            if recorded[key.get_name()] == key:
                lines.append(f"{t.name} ({t.key_name}): already trusted, {fingerprint(key)}")
                continue
            raise HostKeyError(f"{t.name}: key changed for {t.key_name}: now {fingerprint(key)}, "
                               f"recorded {fingerprint(recorded[key.get_name()])}. Remove the old "
                               f"entry from {path} by hand if the change is expected.")
        if not confirm(f"{t.name} ({t.key_name}) presents {fingerprint(key)}. Trust it?"):
            lines.append(f"{t.name}: not trusted")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{t.key_name} {key.get_name()} {key.get_base64()}\n")
        lines.append(f"{t.name} ({t.key_name}): trusted {fingerprint(key)}")
    return lines
