"""Celery app: broker is Redis, found through Sentinel (REDIS_SENTINELS, REDIS_MASTER_NAME)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bmms_demo.settings")

app = Celery("bmms_demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
