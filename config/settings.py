"""Preflab settings: one module, driven by environment variables.

Defaults give an embedded setup that needs no server (SQLite and a filesystem
Celery broker under ``var/``); production sets ``DATABASE_URL`` and
``CELERY_BROKER_URL`` to PostgreSQL and Redis. See README.md, "Configuration".
"""

from __future__ import annotations

from datetime import timedelta
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
# A model's local source must lie under one of these folders (comma-separated; relative
# sources resolve against the first). Hub ids ("org/name") need no root.


PREFLAB_MODEL_ROOTS = list(
    dict.fromkeys(
        [Path(root).expanduser().resolve() for root in env_list("PREFLAB_MODEL_ROOTS", [])]
        + [PREFLAB_DATA_DIR]  # where finished runs register their models
    )
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "config",
    "accounts",
    "generation",
    "labeling",
    "training",
    # The top layer: the demo's seeding and start-up commands import every app.
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.HtmxMessagesMiddleware",
    # Turns a database error caused by input (a number out of range, a NUL character)
    # into a 400 wherever a form or serializer missed it.
    "config.middleware.BadInputMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
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


def _database_config() -> dj_database_url.DBConfig:
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
# django-axes watches every authenticate() call (the login page and POST /api/token/):
# after AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# locked out for LOGIN_LOCKOUT_MINUTES (a right password then fails too).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Behind a reverse proxy the client's address is in X-Forwarded-For (set TRUST_PROXY=1).
AXES_IPWARE_PROXY_COUNT = 1 if env_bool("TRUST_PROXY", False) else None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env_bool("TRUST_PROXY", False) else ["REMOTE_ADDR"]
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
# HTTPS: HSTS, redirecting plain HTTP, and trusting the proxy's X-Forwarded-Proto (only
# behind a proxy that sets it). README.md, "Production checklist", sets all of them.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# /healthz stays reachable over plain HTTP for load balancers inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_PROXY", False) else None
)

# Content-Security-Policy (django-csp 4): scripts and styles come from our own static files
# only; the pages have no inline scripts. Inline style attributes (progress bar widths) are
# the one exception.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Users and API tokens (accounts/). A token older than this stops working; 0: never.
PREFLAB_TOKEN_TTL_DAYS = env_int("PREFLAB_TOKEN_TTL_DAYS", 30, minimum=0)
# A one-time set-password link is valid this long (Django's password-reset token).
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT_S", 3 * 24 * 3600, minimum=60)
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend"
    if env_str("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "preflab@localhost"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # One pagination style for every list: {"count", "next", "previous", "results"}.
    "DEFAULT_PAGINATION_CLASS": "config.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    # Throttles key on the client address: X-Forwarded-For's last hop behind a trusted proxy,
    # else the socket's address (a client-supplied header must not pick its own bucket).
    "NUM_PROXIES": 1 if env_bool("TRUST_PROXY", False) else 0,
    "DEFAULT_THROTTLE_RATES": {
        # POST /api/token/ per client address, on top of django-axes' lockout.
        "token": env_str("TOKEN_THROTTLE_RATE") or "20/min",
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Preflab API",
    "DESCRIPTION": (
        "Collect human preferences on language-model outputs and train models on them. "
        "Authenticate with `Authorization: Token <key>` (POST /api/token/) or a browser session. "
        "Researchers read, admins write; annotators use the labeling endpoints and get 404 "
        "for generation and training objects. Every list is paginated with `?page=`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "generation.models.GenerationJob.Status",
        "ImportFormatEnum": ["auto", "jsonl", "csv", "hh"],
        "FlagEnum": "labeling.services.FLAGS",
    },
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
    "training.tasks.queue_assist_finish": {"queue": "training"},
    "training.tasks.queue_ai_label": {"queue": "training"},
    "training.tasks.constitution_label": {"queue": "training"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    # The watchdog of every kind of background job (config.jobs): fail stale heartbeats.
    "background-jobs-fail-stale": {
        "task": "config.tasks.background_jobs_fail_stale",
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
# How often a generation worker writes that heartbeat (for its job and for its shard).
GENERATION_HEARTBEAT_S = env_int("GENERATION_HEARTBEAT_S", 5, minimum=1)
# The same for training runs and reward scorings (their heartbeat thread beats every 5 s,
# whatever a training step takes).
TRAINING_STALE_AFTER_S = env_int("TRAINING_STALE_AFTER_S", 300, minimum=10)
# Multi-process training runs (training/distributed.py). Whether the training workers have
# CUDA GPUs, which DeepSpeed needs: "auto" asks torch on the machine that validates the run
# (the web server), "1" or "0" say so for workers on other machines.
TRAINING_CUDA = env_str("PREFLAB_TRAINING_CUDA", "auto") or "auto"
# host:port of the torchrun rendezvous for runs on several machines (num_nodes > 1); the
# worker that takes such a run is on that host.
TRAINING_RDZV_ENDPOINT = env_str("PREFLAB_TRAINING_RDZV_ENDPOINT", "") or ""

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO") or "INFO"},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # django-axes logs every successful login at INFO; failures and lockouts are WARNING.
        "axes": {"level": "WARNING"},
    },
}
