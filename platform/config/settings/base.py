"""Settings shared by every environment. Everything variable comes from the environment.

With nothing set, Tessera runs embedded: SQLite, Celery over kombu's filesystem transport,
results and beat schedules in the database.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import environ

ROOT_DIR = Path(__file__).resolve().parents[3]
PLATFORM_DIR = ROOT_DIR / "platform"
for path in (str(ROOT_DIR), str(PLATFORM_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

env = environ.Env()
environ.Env.read_env(ROOT_DIR / ".env", overwrite=False) if (ROOT_DIR / ".env").exists() else None

VAR_DIR = Path(env.str("TESSERA_VAR_DIR", default=str(ROOT_DIR / "var")))

# Development only: production refuses this key (config.settings.production).
DEV_SECRET_KEY = "insecure-dev-key-change-me"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
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
    "django_celery_beat",
    "django_celery_results",
    # platform apps
    "accounts",
    "catalog",
    "ingestion",
    "training",
    "audits",
    "api",
    "governance",
    "observability",
    # verticals: each registers itself in its AppConfig.ready()
    "verticals.finance",
    "verticals.healthcare",
    "verticals.retail",
    "verticals.education",
    "verticals.manufacturing",
]

MIDDLEWARE = [
    # First: every response, redirects and errors included, carries X-Request-ID.
    "observability.middleware.RequestIdMiddleware",
    # Content-Security-Policy on every answer, no-store on the API's (config.headers).
    "config.headers.SecurityHeadersMiddleware",
    # Second: a database outage in any later middleware or view answers 503, not 500.
    "observability.outage.DatabaseOutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The organisation's sign-in lifetime (accounts.sessions).
    "accounts.sessions.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [ROOT_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.membership",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'tessera.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Worker, beat and web share one file: wait for locks instead of failing at once
    # (IMMEDIATE takes the write lock at BEGIN, so a transaction never fails half-way on
    # an upgrade from read to write), and WAL lets readers go on while one process writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({
        "timeout": 30, "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = ROOT_DIR / "staticfiles"
STATICFILES_DIRS = [ROOT_DIR / "platform" / "static"]

# Uploaded data lives outside the web root and is never served by a URL.
TESSERA_UPLOAD_DIR = Path(env.str("TESSERA_UPLOAD_DIR", default=str(VAR_DIR / "uploads")))
TESSERA_ARTIFACT_DIR = Path(env.str("TESSERA_ARTIFACT_DIR", default=str(VAR_DIR / "artifacts")))
TESSERA_MAX_UPLOAD_BYTES = env.int("TESSERA_MAX_UPLOAD_BYTES", default=200 * 1024 * 1024)
# Wider tables are refused at upload (a header of a million fields is an attack, not data).
TESSERA_MAX_COLUMNS = env.int("TESSERA_MAX_COLUMNS", default=2000)
# Column names longer than this, or a header longer in total, are refused at upload: every
# mapping page and API answer lists the names.
TESSERA_MAX_COLUMN_NAME_CHARS = env.int("TESSERA_MAX_COLUMN_NAME_CHARS", default=256)
TESSERA_MAX_HEADER_CHARS = env.int("TESSERA_MAX_HEADER_CHARS", default=64 * 1024)
# Uploaded files are encrypted at rest (ingestion.storage): comma-separated Fernet keys, the
# first encrypts, all decrypt (rotation: docs/operations.md). Unset: a key derived from
# SECRET_KEY, with a warning; production settings require them.
TESSERA_FERNET_KEYS = env.list("TESSERA_FERNET_KEYS", default=[])
TESSERA_REQUIRE_FERNET_KEYS = False
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Scripts only from this site, and no inline script or handler anywhere (templates keep
# their scripts in static files); inline style *attributes* stay allowed for the progress
# bars' widths. Set TESSERA_CONTENT_SECURITY_POLICY to "" to send none.
TESSERA_CONTENT_SECURITY_POLICY = env.str("TESSERA_CONTENT_SECURITY_POLICY", default=(
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"))

# --- Celery -------------------------------------------------------------------------
def filesystem_broker_options(broker_dir: Path) -> dict:
    """Transport options for kombu's filesystem broker, creating its folders (kombu does not)."""
    for sub in ("out", "processed", "control"):
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)
    return {
        # Without it kombu puts its broadcast folder in the process's working directory.
        "control_folder": str(broker_dir / "control"),
        "data_folder_in": str(broker_dir / "out"),
        "data_folder_out": str(broker_dir / "out"),
        "processed_folder": str(broker_dir / "processed"),
        "store_processed": False,
    }


BROKER_DIR = Path(env.str("TESSERA_BROKER_DIR", default=str(VAR_DIR / "broker")))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(BROKER_DIR)
else:
    # Redis gives an unacknowledged message (its worker died) to another worker after the
    # visibility timeout. A redelivery while the first worker still trains is harmless (the
    # run's lease makes it a no-op, see training.services), so the timeout only bounds how
    # soon Redis itself hands back a dead worker's run; the recovery in every worker does
    # it sooner (TESSERA_RUN_LEASE_S after the death).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=12 * 3600)
    }
    # How often a worker looks for expired unacknowledged messages (kombu's default, about
    # every 100 s, is too slow for a short visibility timeout).
    if env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=0) > 0:
        CELERY_BROKER_TRANSPORT_OPTIONS.update(
            unacked_restore_interval=env.int("CELERY_UNACKED_RESTORE_INTERVAL"),
            unacked_restore_throttle=1,
        )
# django-celery-results' backend, retrying through a database outage (with backoff, up to
# 10 s apart, for about 10 minutes) instead of letting it stop the worker.
CELERY_RESULT_BACKEND = "observability.celery_results:OutageTolerantDatabaseBackend"
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 60
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"training.tasks.train_run": {"queue": "training"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Flower sees tasks from the moment they are queued, not only after enabling events.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# Crashed and lost runs (training.services): an attempt renews its run's lease every
# quarter of TESSERA_RUN_LEASE_S; a lease left to expire means the attempt died and the run
# is taken over and resumed from its checkpoint. Every worker runs the recovery every
# TESSERA_RECOVERY_INTERVAL_S: it re-sends runs whose attempt died and queued runs the
# broker lost, unless sent within TESSERA_REQUEUE_AFTER_S. A run whose attempts died
# TESSERA_RUN_MAX_ATTEMPTS times fails.
TESSERA_RUN_LEASE_S = env.float("TESSERA_RUN_LEASE_S", default=120.0)
TESSERA_RECOVERY_INTERVAL_S = env.float("TESSERA_RECOVERY_INTERVAL_S", default=60.0)
TESSERA_REQUEUE_AFTER_S = env.float("TESSERA_REQUEUE_AFTER_S", default=120.0)
# Two: a run whose attempts killed their worker twice (out of memory, most likely) fails
# with a message saying so instead of being delivered again.
TESSERA_RUN_MAX_ATTEMPTS = env.int("TESSERA_RUN_MAX_ATTEMPTS", default=2)
# Work budgets (training.budgets), checked before a run is queued: a run planning more
# optimiser steps (model and twin together), more rows x epochs, or more memory is refused.
TESSERA_MAX_RUN_STEPS = env.int("TESSERA_MAX_RUN_STEPS", default=1_000_000)
TESSERA_MAX_RUN_ROW_EPOCHS = env.int("TESSERA_MAX_RUN_ROW_EPOCHS", default=200_000_000)
TESSERA_MAX_RUN_MEMORY_MB = env.int("TESSERA_MAX_RUN_MEMORY_MB", default=6144)
# A worker process whose resident memory grows past this (in MB) after a task is replaced
# by a fresh one (Celery's worker_max_memory_per_child; the container's memory limit is
# the hard stop, docker/compose.yml).
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int("TESSERA_WORKER_MAX_MEMORY_MB", default=8192) * 1024

# --- REST API -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",  # DRF's, membership preloaded
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tessera API",
    "DESCRIPTION": "Privacy-preserving, fairness-audited machine learning.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The error answers DRF gives besides the views' own (400 field errors, 401, 403, 404).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.document_error_responses",
    ],
    # Three models have a "status" field with different choices: name each enum.
    "ENUM_NAME_OVERRIDES": {
        "DatasetVersionStatusEnum": "ingestion.models.DatasetVersion.Status",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
        "ModelVersionStatusEnum": "training.models.ModelVersion.Status",
    },
}

# --- Sign-in lockout (django-axes) ---------------------------------------------------
# AXES_FAILURE_LIMIT failed sign-ins for one username from one address lock that pair out
# for the cool-off period: the login page, the admin's and the API's token endpoint (every
# password check goes through authenticate()). Unlock early: the admin's Access attempts, or
# `manage.py axes_reset_username USERNAME`. What a locked-out person sees: accounts.lockout.
INSTALLED_APPS.append("axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as axes requires
AUTHENTICATION_BACKENDS = [
    "accounts.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("TESSERA_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("TESSERA_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Failed sign-ins from one address over every username (password spraying) that lock the
# address for the cool-off period (accounts.lockout.LockoutBackend).
TESSERA_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("TESSERA_LOGIN_ADDRESS_FAILURE_LIMIT", default=20)
# API tokens expire this long after they are issued; the token endpoint issues a new one.
TESSERA_API_TOKEN_TTL_HOURS = env.float("TESSERA_API_TOKEN_TTL_HOURS", default=7 * 24)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# The client address: REMOTE_ADDR, unless a proxy in front sets X-Forwarded-For (then say how
# many proxies there are, or anyone could pick their own address by sending the header).
AXES_IPWARE_PROXY_COUNT = env.int("TESSERA_TRUSTED_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"])

# Structured log lines carrying request_id, run_id and task_id (observability.logs):
# LOG_FORMAT=logfmt (key=value, the default) or json (one object per line).
LOG_FORMAT = env.str("LOG_FORMAT", default="logfmt")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "observability.logs.ContextFilter"}},
    "formatters": {
        "logfmt": {"()": "observability.logs.LogfmtFormatter"},
        "json": {"()": "observability.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "logfmt",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
# StreamHandler writes to stderr, so commands that print JSON keep stdout clean.
# Workers write a heartbeat this often; /healthz calls one silent for longer "stale".
TESSERA_WORKER_HEARTBEAT_S = env.float("TESSERA_WORKER_HEARTBEAT_S", default=15.0)
TESSERA_WORKER_STALE_AFTER_S = env.float("TESSERA_WORKER_STALE_AFTER_S", default=60.0)

# How often a running job writes its progress to the database (epoch ends always write).
TESSERA_PROGRESS_INTERVAL_S = env.float("TESSERA_PROGRESS_INTERVAL_S", default=0.5)
