"""Sign-in lockout (django-axes): what a locked-out person sees, and the API's token endpoint.

Too many failed sign-ins for one username from one address lock that pair out for
``AXES_COOLOFF_TIME`` (settings); too many from one address across usernames (password
spraying, ``TESSERA_LOGIN_ADDRESS_FAILURE_LIMIT``) lock the address. The login page says so
in words, with status 429; the API answers JSON. A superuser unlocks early in the admin
(Axes > Access attempts: delete the row) or with ``manage.py axes_reset_username USERNAME``.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.helpers import get_client_ip_address, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

LOCKED_STATUS = status.HTTP_429_TOO_MANY_REQUESTS


def lockout_message(request) -> str:
    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    wait = f"for {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "until unlocked"
    return (f"Too many failed sign-in attempts for this account from your address: signing in "
            f"is locked {wait}. Try again later, or ask an administrator to unlock the account.")


def _retry_after(request) -> dict:
    cool_off = get_cool_off(request)
    return {"Retry-After": str(int(cool_off.total_seconds()))} if cool_off else {}


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the login page with the reason (429), or JSON for the API."""
    message = lockout_message(request)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=LOCKED_STATUS,
                            headers=_retry_after(request))
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    response = render(request, "accounts/login.html", {
        "form": form, "locked_out": message,
        "next": request.POST.get("next") or request.GET.get("next", ""),
    }, status=LOCKED_STATUS)
    for name, value in _retry_after(request).items():
        response[name] = value
    return response


def _recent_attempts():
    return AccessAttempt.objects.filter(
        attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)


def username_locked_out(username: str) -> bool:
    """Whether ``username`` is locked out from any address (its failures reached the limit
    within the cool-off)."""
    return _recent_attempts().filter(
        username=username, failures_since_start__gte=settings.AXES_FAILURE_LIMIT).exists()


def address_locked_out(ip_address: str | None) -> bool:
    """Whether failures from ``ip_address``, over every username, reached the address limit
    within the cool-off (one address trying a password on many accounts)."""
    if not ip_address:
        return False
    failures = _recent_attempts().filter(ip_address=ip_address).aggregate(
        total=Sum("failures_since_start"))["total"] or 0
    return failures >= settings.TESSERA_LOGIN_ADDRESS_FAILURE_LIMIT


class LockoutBackend(AxesStandaloneBackend):
    """Axes' lockout check for every sign-in that comes with a request (the login page, the
    admin's and the API token endpoint). A call without one (``Client.login`` in tests,
    scripts) cannot be repeated from outside: it goes on to the model backend unchecked
    instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        if address_locked_out(get_client_ip_address(request)):
            # Axes' middleware (and TokenView) answer with the lockout page for this flag.
            request.axes_locked_out = True
            request.axes_credentials = {"username": username}
            raise AxesBackendPermissionDenied("this address is locked out")
        return super().authenticate(request, username=username, password=password, **kwargs)


class TokenView(ObtainAuthToken):
    """``POST /api/v1/auth/token/``: DRF's token for a username and password, under the same
    lockout as the login page (axes flags the DRF request, which its middleware never sees)."""

    @extend_schema(
        request=AuthTokenSerializer, auth=[],
        responses={200: inline_serializer("Token", {"token": serializers.CharField()}),
                   429: OpenApiResponse(inline_serializer("LockedOut", {
                       "detail": serializers.CharField()}),
                       description="Too many failed attempts: locked for a while.")},
    )
    def post(self, request, *args, **kwargs):
        from accounts.authentication import fresh_token

        try:
            serializer = self.get_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
        except ValidationError:
            if getattr(request, "axes_locked_out", False):
                return Response({"detail": lockout_message(request)}, status=LOCKED_STATUS,
                                headers=_retry_after(request))
            raise
        # An expired token is replaced, never handed out again.
        return Response({"token": fresh_token(serializer.validated_data["user"]).key})
