import json
import os
import socket
import time

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import Note

STARTED = time.time()
REQUESTS = {"count": 0}


def _release() -> str:
    """Units run in /srv/bmms/slots/<colour> or /srv/bmms/current: symlinks to the release."""
    return os.path.basename(os.getcwd())


def health(request):
    """The process is alive. No dependency is touched."""
    return JsonResponse({"status": "ok"})


def ready(request):
    """Database (primary and a replica, through PgBouncer) and Redis (through Sentinel) answer."""
    checks, ok = {}, True
    for alias in ("default", "replica"):
        try:
            with connections[alias].cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                checks[alias] = "replica" if cur.fetchone()[0] else "primary"
        except Exception as exc:  # noqa: BLE001 - report any failure
            checks[alias], ok = f"error: {exc.__class__.__name__}", False
    try:
        from redis.sentinel import Sentinel
        sentinel = Sentinel(settings.REDIS_SENTINELS, socket_timeout=2,
                            sentinel_kwargs={"password": settings.REDIS_SENTINEL_PASSWORD})
        master = sentinel.master_for(settings.REDIS_MASTER_NAME, password=settings.REDIS_PASSWORD,
                                     socket_timeout=2)
        master.ping()
        checks["redis"] = "%s:%s" % sentinel.discover_master(settings.REDIS_MASTER_NAME)
    except Exception as exc:  # noqa: BLE001
        checks["redis"], ok = f"error: {exc.__class__.__name__}", False
    return JsonResponse({"status": "ok" if ok else "fail", "checks": checks},
                        status=200 if ok else 503)


def version(request):
    return JsonResponse({"release": os.environ.get("BMMS_RELEASE", _release()),
                         "host": socket.gethostname(),
                         "color": os.environ.get("BMMS_COLOR", "-"),
                         "pid": os.getpid()})


def metrics(request):
    lines = ["# TYPE bmms_uptime_seconds gauge", f"bmms_uptime_seconds {time.time() - STARTED:.0f}",
             "# TYPE bmms_notes_total gauge", f"bmms_notes_total {Note.objects.count()}"]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def notes(request):
    if request.method == "POST":
        text = json.loads(request.body or b"{}").get("text", "")[:500]
        note = Note.objects.create(text=text, source=f"web@{socket.gethostname()}")
        return JsonResponse({"id": note.id}, status=201)
    using = request.GET.get("db", "default")
    rows = list(Note.objects.using(using).values("id", "text", "source", "task_id")[:1000])
    return JsonResponse({"db": using, "notes": rows})


@csrf_exempt
@require_http_methods(["POST"])
def start_task(request):
    from .tasks import write_note
    data = json.loads(request.body or b"{}")
    result = write_note.delay(data.get("text", "from celery"), data.get("delay", 0))
    return JsonResponse({"task_id": result.id}, status=202)


def task_result(request, task_id):
    note = Note.objects.filter(task_id=task_id).first()
    if note is None:
        return JsonResponse({"task_id": task_id, "done": False}, status=404)
    return JsonResponse({"task_id": task_id, "done": True, "note": note.id, "source": note.source})


@csrf_exempt
def login_stub(request):
    """A login endpoint for the rate limit (5/min per client at the load balancer)."""
    return JsonResponse({"login": "not implemented in the demo"}, status=200)
