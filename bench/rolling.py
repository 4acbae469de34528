"""Benchmark (not a test): a constant HTTPS load through the load balancer during (1) a rolling
restart of every web node and (2) a deploy of a release whose /ready/ fails. Prints requests,
failed requests (non-2xx or connection errors), p50/p99 latency and rollout wall time.
Target: 0 failed requests out of at least 5,000 in both.

    sudo .venv/bin/python bench/rolling.py      # needs a deployed lab (inv demo)

Traffic goes only to the lab's load balancer (198.18.0.0/15, on this machine); the load is
bounded in time and stops by itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import io
import shutil
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bmms_fab import deploy, executor, inventory, rolling  # noqa: E402
from bmms_fab import secrets as secrets_mod  # noqa: E402
from bmms_fab.errors import BmmsError  # noqa: E402


class Load:
    """N threads, each with a keep-alive HTTPS connection, GET a path as fast as answered."""

    def __init__(self, address: str, domain: str, path: str = "/version/", threads: int = 8,
                 max_seconds: float = 600):
        self.address, self.domain, self.path = address, domain, path
        self.threads, self.max_seconds = threads, max_seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stale_retries = 0
        self.workers: list[threading.Thread] = []

    def _connect(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE     # the lab's self-signed certificate
        return http.client.HTTPSConnection(self.address, 443, timeout=30, context=ctx)

    def _get(self, conn):
        conn.request("GET", self.path, headers={"Host": self.domain})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def _run(self) -> None:
        conn, used = self._connect(), False
        deadline = time.monotonic() + self.max_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                try:
                    status = self._get(conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not used:
                        raise
                    # A reused keep-alive connection the server closed (nginx reload) before
                    # sending anything: clients retry such a GET once (RFC 9110 9.2.2).
                    with self.lock:
                        self.stale_retries += 1
                    conn.close()
                    conn = self._connect()
                    status = self._get(conn)
                used = True
                ok, what = 200 <= status < 300, f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - every other error is a failed request
                ok, what = False, f"{exc.__class__.__name__}: {exc}"
                conn.close()
                conn, used = self._connect(), False
            with self.lock:
                self.latencies.append(time.monotonic() - t0)
                if not ok:
                    self.failures.append(what)
        conn.close()

    def __enter__(self) -> "Load":
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for w in self.workers:
            w.join()

    def report(self, label: str, rollout: float, min_requests: int) -> None:
        lat = sorted(self.latencies)
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0  # noqa: E731
        print(f"{label}: {len(lat)} requests, {len(self.failures)} failed, p50 {pct(0.5):.1f} ms, "
              f"p99 {pct(0.99):.1f} ms, rollout {rollout:.1f} s "
              f"({self.stale_retries} keep-alive connections closed by a reload, retried)")
        if self.failures:
            kinds = sorted(set(self.failures))[:5]
            print(f"  failures: {', '.join(kinds)}")
        if len(lat) < min_requests:
            print(f"  (fewer than {min_requests} requests)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--min-requests", type=int, default=5000)
    args = ap.parse_args()
    env = inventory.load(ROOT / "hosts.yml").env("lab")
    secrets = secrets_mod.load(env)
    targets = {t.name: t for t in executor.targets(env)}
    lb = env.with_role("lb")[0]
    quiet = executor.Printer(io.StringIO())
    web = [h.name for h in env.with_role("web")]

    load = Load(lb.address, env.domain, threads=args.threads)
    with load:
        # warm up, then keep the load on until enough requests were made after the rollout
        time.sleep(2)
        t0 = time.monotonic()
        rolling.roll_web(env, secrets, targets, web, lambda s: s.current, force=True,
                         printer=quiet)
        rollout = time.monotonic() - t0
        while len(load.latencies) < args.min_requests:
            time.sleep(0.5)
    load.report("rolling restart of 4 nodes", rollout, args.min_requests)

    work = Path(tempfile.mkdtemp(prefix="bmms-bench-broken-"))
    try:
        app = work / "app"
        shutil.copytree(Path(env.base_dir) / env.app["path"], app,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        views = app / "bmms_demo/core/views.py"
        views.write_text(views.read_text().replace(
            'def ready(request):\n', 'def ready(request):\n    return JsonResponse({"status": "broken"}, status=503)\n', 1))
        broken = dataclasses.replace(env, app=dict(env.app, path=str(app)))
        load = Load(lb.address, env.domain, threads=args.threads)
        with load:
            time.sleep(2)
            t0 = time.monotonic()
            try:
                deploy.deploy(broken, printer=quiet, log=lambda *_: None)
                outcome = "deployed (unexpected)"
            except BmmsError as exc:
                outcome = str(exc).splitlines()[1].strip()[:150]
            rollout = time.monotonic() - t0
            while len(load.latencies) < args.min_requests:
                time.sleep(0.5)
        load.report("deploy of a release whose /ready/ fails", rollout, args.min_requests)
        print(f"  outcome: {outcome}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
