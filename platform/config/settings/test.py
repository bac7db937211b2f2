"""Test settings: the same services as configured by the environment, fast hashing."""

from pathlib import Path

from .base import *  # noqa: F403
from .base import env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
TESSERA_MAX_UPLOAD_BYTES = env.int("TESSERA_MAX_UPLOAD_BYTES", default=5 * 1024 * 1024)

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: tests that start a real Celery worker share the database with it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}  # noqa: F405

# Tests never share a broker folder with a development worker; a test worker reads this one.
if CELERY_BROKER_URL.startswith("filesystem") and not env.str("TESSERA_BROKER_DIR", default=""):  # noqa: F405
    BROKER_DIR = VAR_DIR / "test-broker"  # noqa: F405
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(BROKER_DIR)  # noqa: F405
TESSERA_UPLOAD_DIR = Path(env.str("TESSERA_UPLOAD_DIR", default=str(VAR_DIR / "test-uploads")))  # noqa: F405
TESSERA_ARTIFACT_DIR = Path(  # noqa: F405
    env.str("TESSERA_ARTIFACT_DIR", default=str(VAR_DIR / "test-artifacts"))  # noqa: F405
)
