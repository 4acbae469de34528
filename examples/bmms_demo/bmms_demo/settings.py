"""Settings from the environment (the env file bmms-fab renders from hosts.yml)."""

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent
env = os.environ.get


def database(url: str) -> dict:
    u = urlparse(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": u.path.lstrip("/"), "USER": unquote(u.username or ""),
        "PASSWORD": unquote(u.password or ""), "HOST": u.hostname, "PORT": str(u.port or 5432),
        "OPTIONS": {"sslmode": env("DB_SSLMODE", "prefer")},
        "CONN_MAX_AGE": 0,
        # PgBouncer in transaction pooling: no server-side cursors across transactions
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }


SECRET_KEY = env("DJANGO_SECRET_KEY", "")
BUILD = env("BMMS_BUILD") == "1"     # collectstatic at build time needs no database or secret
if not SECRET_KEY:
    if not BUILD:
        raise RuntimeError("DJANGO_SECRET_KEY is not set")
    SECRET_KEY = "build-only-not-secret-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = [h for h in env("ALLOWED_HOSTS", "localhost").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "bmms_demo.core",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "bmms_demo.urls"
WSGI_APPLICATION = "bmms_demo.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages"]},
}]

if BUILD:
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
else:
    DATABASES = {"default": database(env("DATABASE_URL", "")),
                 "replica": database(env("DATABASE_REPLICA_URL") or env("DATABASE_URL", ""))}
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}

REDIS_SENTINELS = [(h, 26379) for h in env("REDIS_SENTINELS", "").split(",") if h]
REDIS_MASTER_NAME = env("REDIS_MASTER_NAME", "bmms")
REDIS_PASSWORD = env("REDIS_PASSWORD", "")
REDIS_SENTINEL_PASSWORD = env("REDIS_SENTINEL_PASSWORD", "")

# Celery: broker through Sentinel; task results are the rows the tasks write.
CELERY_BROKER_URL = ";".join(f"sentinel://:{REDIS_PASSWORD}@{h}:{p}" for h, p in REDIS_SENTINELS) \
    or "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "master_name": REDIS_MASTER_NAME,
    "sentinel_kwargs": {"password": REDIS_SENTINEL_PASSWORD},
    "visibility_timeout": 3600,
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

STATIC_URL = "/static/"
STATIC_ROOT = env("STATIC_ROOT", str(BASE_DIR / "collected-static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
MEDIA_ROOT = env("MEDIA_ROOT", "/srv/bmms/shared/media")
MEDIA_URL = "/media/"
DATA_UPLOAD_MAX_MEMORY_SIZE = 100 * 1024 * 1024
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# Behind the TLS-terminating load balancer
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env("SECURE_SSL_REDIRECT", "1") == "1"
SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^ready/$", r"^version/$", r"^metrics/$"]
SECURE_HSTS_SECONDS = 63072000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1, "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
