"""BMMS demo app: health/ready/version endpoints, notes written by the web and by Celery."""

from .celery import app as celery_app

__all__ = ("celery_app",)
