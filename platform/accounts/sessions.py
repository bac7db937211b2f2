"""A sign-in lifetime each organisation sets (``Organisation.session_lifetime_minutes``).

Counted from sign-in, not from the last request, and applied on every request, so a
shorter lifetime takes effect at once for sessions already open. Without one, Django's
``SESSION_COOKIE_AGE`` applies.
"""

from __future__ import annotations

import time

from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.dispatch import receiver

from accounts.models import Organisation, Role
from accounts.permissions import require_role
from accounts.scoping import request_membership

SIGNED_IN_AT = "tessera_signed_in_at"
# Five minutes to thirty days.
MIN_MINUTES, MAX_MINUTES = 5, 30 * 24 * 60


@receiver(user_logged_in, dispatch_uid="tessera-session-signed-in-at")
def _stamp(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SIGNED_IN_AT] = time.time()


class SessionLifetimeMiddleware:
    """Signs out a session older than its organisation's lifetime; after
    AuthenticationMiddleware, before LoginRequiredMiddleware (which then asks to sign in)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            self._apply(request)
        return self.get_response(request)

    @staticmethod
    def _apply(request) -> None:
        try:
            organisation = request_membership(request).organisation
        except PermissionDenied:
            return  # operators without a membership: the deployment's default
        minutes = organisation.session_lifetime_minutes
        if not minutes:
            return
        signed_in_at = request.session.setdefault(SIGNED_IN_AT, time.time())
        left = signed_in_at + minutes * 60 - time.time()
        if left <= 0:
            logout(request)
            return
        request.session.set_expiry(int(left) + 1)


def set_session_lifetime(*, user, minutes: int | None) -> Organisation:
    """An organisation admin sets their users' sign-in lifetime (None: the default);
    audited. ValueError outside the allowed range."""
    from observability.audit_trail import log_action

    membership = require_role(user, Role.ADMIN)
    if minutes is not None and not MIN_MINUTES <= int(minutes) <= MAX_MINUTES:
        raise ValueError(f"the session lifetime must be {MIN_MINUTES} to {MAX_MINUTES} minutes")
    organisation = membership.organisation
    with transaction.atomic():
        before = organisation.session_lifetime_minutes
        organisation.session_lifetime_minutes = None if minutes is None else int(minutes)
        organisation.save(update_fields=["session_lifetime_minutes"])
        log_action(organisation=organisation, actor=user,
                   action="organisation.session_lifetime_changed", obj=organisation,
                   detail={"before": before, "after": organisation.session_lifetime_minutes})
    return organisation
