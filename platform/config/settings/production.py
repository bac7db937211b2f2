"""Production: secrets and hosts must come from the environment.

Without DJANGO_SECRET_KEY (or with the development key or the .env.example placeholder) or
without DJANGO_ALLOWED_HOSTS, nothing starts: ImproperlyConfigured names the variable.
`manage.py check --deploy` passes with no warning (tests/reliability/test_hardening.py).
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DEV_SECRET_KEY, env

# Keys that are in the repository, so are no secret.
KNOWN_KEYS = {DEV_SECRET_KEY, "change-me-to-a-long-random-string"}

DEBUG = False
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="").strip()
if not SECRET_KEY or SECRET_KEY in KNOWN_KEYS:
    raise ImproperlyConfigured(
        "Set the DJANGO_SECRET_KEY environment variable to a long random string (e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'); production does not "
        "start without it, nor with the development or example key."
    )
ALLOWED_HOSTS = [host for host in env.list("DJANGO_ALLOWED_HOSTS", default=[]) if host]
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "Set the DJANGO_ALLOWED_HOSTS environment variable: the comma-separated host names "
        "this site answers to."
    )
# Uploads are encrypted at rest with TESSERA_FERNET_KEYS: no derived default here.
TESSERA_REQUIRE_FERNET_KEYS = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Load balancers probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
