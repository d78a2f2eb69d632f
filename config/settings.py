"""Preflab settings: one module, driven by environment variables.

Defaults give an embedded setup that needs no server (SQLite and a filesystem
Celery broker under ``var/``); production sets ``DATABASE_URL`` and
``CELERY_BROKER_URL`` to PostgreSQL and Redis. See README.md, "Configuration".
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("PREFLAB_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (set DEBUG=1 for local development)."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Models, checkpoints and exports live here; a GPU worker on another host must see the
# same path (a shared volume) to load what the web app registered.
PREFLAB_DATA_DIR = env_path("PREFLAB_DATA_DIR", VAR_DIR / "data")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_htmx",
    "config",
    "generation",
    "labeling",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.HtmxMessagesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.roles.roles_context",
                "config.navigation.nav_context",
            ],
        },
    },
]


def _database_config() -> dict[str, object]:
    default_url = f"sqlite:///{VAR_DIR / 'preflab.sqlite3'}"
    url = env_str("DATABASE_URL") or default_url
    try:
        # Persistent connections: opening a PostgreSQL connection costs more than most
        # requests; health checks drop ones the server closed.
        config = dj_database_url.parse(
            url,
            conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL={url!r} cannot be parsed: {exc}") from None
    engine = str(config["ENGINE"])
    if engine.endswith("sqlite3"):
        # WAL lets the web server read while the worker writes; IMMEDIATE transactions
        # take the write lock up front instead of failing with "database is locked".
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    elif not engine.endswith("postgresql"):
        raise ImproperlyConfigured(
            f"DATABASE_URL={url!r}: only PostgreSQL (postgres://) and SQLite (sqlite://) are supported."
        )
    if engine.endswith("sqlite3"):
        # A file, not Django's in-memory default, so Celery workers started as separate
        # processes by the tests see the same test database.
        config["TEST"] = {"NAME": str(VAR_DIR / "test-preflab.sqlite3")}
    return config


DATABASES = {"default": _database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
PASSWORD_HASHERS = env_list(
    "PASSWORD_HASHERS",
    [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    ],
)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC") or "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Serve straight from the finders so the demo and tests need no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}

# --- Celery ---------------------------------------------------------------------------
# The default broker is kombu's filesystem transport: no server, fine for one machine.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
CELERY_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
elif not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://")):
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r}: use redis://, amqp:// or filesystem://."
    )
# Job state lives in our own tables, so tasks store no results by default; the result
# backend (files beside the embedded broker, else the broker's Redis) serves the few tasks
# that opt in, such as the worker round-trip check.
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or (
    f"file://{CELERY_BROKER_DIR / 'results'}"
    if CELERY_BROKER_URL.startswith("filesystem://")
    else CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else None
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
# Only the heavy tasks leave the default queue, so a GPU worker can take just those.
CELERY_TASK_ROUTES = {
    "generation.tasks.generation_job_run": {"queue": "generation"},
    "training.tasks.training_run_execute": {"queue": "training"},
    "training.tasks.reward_scoring_execute": {"queue": "training"},
    "labeling.tasks.labeling_queue_assist_finish": {"queue": "training"},
    "labeling.tasks.labeling_queue_ai_label": {"queue": "training"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "generation-fail-stale-jobs": {
        "task": "generation.tasks.generation_jobs_fail_stale",
        "schedule": 60.0,
    },
    "training-fail-stale-runs": {
        "task": "training.tasks.training_runs_fail_stale",
        "schedule": 60.0,
    },
    # Evaluations and next rounds: open the labeling queue once the generation jobs are done.
    "training-advance-loops": {
        "task": "training.tasks.loops_advance",
        "schedule": 30.0,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# A running job's worker writes a heartbeat every few seconds; past this many seconds
# without one, the watchdog marks the job failed so it can be resumed.
GENERATION_STALE_AFTER_S = env_int("GENERATION_STALE_AFTER_S", 300, minimum=10)
# The same for training runs and reward scorings (their heartbeat thread beats every 5 s,
# whatever a training step takes).
TRAINING_STALE_AFTER_S = env_int("TRAINING_STALE_AFTER_S", 300, minimum=10)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO") or "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
