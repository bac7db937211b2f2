"""API token authentication that loads what every API request asks next with the user.

Tokens expire ``TESSERA_API_TOKEN_TTL_HOURS`` after they were issued (``POST
/api/v1/auth/token/`` then issues a new one), and are refused while their user is locked out
of signing in (accounts.lockout): a password being guessed is no time to keep serving the
account's token.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions


def token_expired(token) -> bool:
    ttl = timedelta(hours=float(settings.TESSERA_API_TOKEN_TTL_HOURS))
    return token.created < timezone.now() - ttl


def fresh_token(user):
    """The user's token, replaced by a new one when it has expired."""
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    if token_expired(token):
        token.delete()
        token = Token.objects.create(user=user)
    return token


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, with the user's membership and organisation in the same
    query (``accounts.scoping.request_membership`` then needs none of its own)."""

    loads_membership = True

    def authenticate_credentials(self, key):
        model = self.get_model()
        try:
            token = model.objects.select_related(
                "user", "user__membership__organisation").get(key=key)
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if token_expired(token):
            raise exceptions.AuthenticationFailed(
                _("Token expired: ask for a new one at /api/v1/auth/token/."))
        # Imported here: DRF loads this class while its settings load, before the apps.
        from accounts.lockout import username_locked_out

        if username_locked_out(token.user.get_username()):
            raise exceptions.AuthenticationFailed(
                _("This account is locked after failed sign-ins; its token is refused until "
                  "the lock ends."))
        return (token.user, token)
