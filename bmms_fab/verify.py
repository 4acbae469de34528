"""End-to-end checks of a running platform, over SSH (so they work wherever the tool does):
through the load balancer, on the replicas, on the Sentinels, in Prometheus. Secrets travel on
stdin, never in a command line."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from . import executor
from .executor import Session
from .inventory import Environment
from .render import PORTS
from .secrets import Secrets


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}" + (f": {self.detail}" if self.detail else "")


def lb_request(lb: Session, env: Environment, method: str, path: str, body: str | None = None,
               patience: float = 20.0):
    """An HTTPS request through the load balancer (run on the LB host, for its domain). A 429
    (the rate limit doing its job) is retried, with a pause, for up to `patience` seconds."""
    data = f"-X {method} -H 'Content-Type: application/json' --data-binary @-" if body else ""
    deadline = time.monotonic() + patience
    while True:
        code, out, err = lb.exec(
            f"curl -sk -m 10 -w '\\n%{{http_code}}' --resolve {env.domain}:443:127.0.0.1 {data} "
            f"https://{env.domain}{path}", stdin=(body or "").encode())
        text = out.decode(errors="replace")
        body_text, _, status = text.rpartition("\n")
        status_code = int(status) if status.isdigit() else 0
        if status_code != 429 or time.monotonic() > deadline:
            return status_code, body_text
        time.sleep(1)


def _json(text: str) -> dict:
    try:
        return json.loads(text)
    except ValueError:
        return {}


def verify(env: Environment, secrets: Secrets, targets: dict[str, executor.Target]) -> list[Check]:
    checks: list[Check] = []
    lb_host = env.with_role("lb")[0]
    with Session(targets[lb_host.name]) as lb:
        for path in (env.app["health"]["path"], env.app["health"]["ready_path"]):
            status, body = lb_request(lb, env, "GET", path)
            checks.append(Check(f"GET {path} through the load balancer", status == 200,
                                f"{status} {body[:200]}"))
        want = {h.name for h in env.with_role("web")}
        seen: dict[str, str] = {}
        for _ in range(12 * len(want)):
            status, body = lb_request(lb, env, "GET", "/version/")
            v = _json(body)
            if status == 200 and v.get("host"):
                seen[v["host"]] = f"{v.get('release')}/{v.get('color')}"
            if want <= set(seen):
                break
        checks.append(Check("/version/ answered by every app host", want <= set(seen),
                            ", ".join(f"{h}={r}" for h, r in sorted(seen.items()))))
        marker = f"verify-{uuid.uuid4().hex[:12]}"
        status, body = lb_request(lb, env, "POST", "/api/notes/", json.dumps({"text": marker}))
        checks.append(Check("row written through the app", status == 201, f"{status} {body[:100]}"))
        status, body = lb_request(lb, env, "POST", "/api/tasks/", json.dumps({"text": marker}))
        task_id = _json(body).get("task_id")
        done = False
        for _ in range(60):
            if not task_id:
                break
            status, body = lb_request(lb, env, "GET", f"/api/tasks/{task_id}/")
            if status == 200 and _json(body).get("done"):
                done = True
                break
            time.sleep(0.5)
        checks.append(Check("Celery task ran and stored its result", done, body[:150]))
    for replica in env.with_role("db_replica"):
        rows = "?"
        with Session(targets[replica.name]) as s:
            for _ in range(20):
                rows = s.run("runuser -u postgres -- psql -X -Atq -d bmms -f -", "read replica",
                             stdin=f"SELECT count(*) FROM core_note WHERE text = '{marker}';".encode(),
                             check=False).strip()
                if rows == "2":
                    break
                time.sleep(0.5)
        checks.append(Check(f"row read back on replica {replica.name}", rows == "2",
                            f"{rows} row(s) with the marker (1 from the web, 1 from Celery)"))
    redis_hosts = {h.address: h.name for h in env.hosts
                   if h.has("redis_master") or h.has("redis_replica")}
    answers = {}
    for sentinel in env.with_role("sentinel"):
        with Session(targets[sentinel.name]) as s:
            out = s.run(f"redis-cli --no-auth-warning -h {sentinel.address} -p {PORTS['sentinel']}",
                        "sentinel", stdin=(f"AUTH {secrets['sentinel_password']}\n"
                                           "SENTINEL get-master-addr-by-name bmms\n").encode(),
                        check=False)
        answers[sentinel.name] = [l for l in out.split() if l not in ("OK",)]
    agreed = {tuple(a[:1]) for a in answers.values()}
    for name, addr in answers.items():
        ok = len(agreed) == 1 and addr[:1] and addr[0] in redis_hosts
        checks.append(Check(f"Sentinel on {name} names the cache master", bool(ok),
                            " ".join(addr) + (f" ({redis_hosts.get(addr[0], '?')})" if addr else "")))
    for mon in env.with_role("monitoring"):
        with Session(targets[mon.name]) as s:
            for _ in range(45):      # a target just restarted is up again at its next scrape
                out = s.run(f"curl -s -m 10 http://localhost:{PORTS['prometheus']}/api/v1/targets",
                            "prometheus targets", check=False)
                active = _json(out).get("data", {}).get("activeTargets", [])
                down = [f"{t['labels'].get('job')}@{t['labels'].get('host', t['labels'].get('instance'))}"
                        for t in active if t.get("health") != "up"]
                if active and not down:
                    break
                time.sleep(1)
        jobs = sorted({t["labels"].get("job") for t in active})
        checks.append(Check(f"Prometheus on {mon.name}: every target up", bool(active) and not down,
                            f"{len(active)} targets ({', '.join(jobs)})"
                            + (f"; down: {', '.join(down)}" if down else "")))
    return checks
