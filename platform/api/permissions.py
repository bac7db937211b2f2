"""API permissions: members of an organisation; reviewers for decisions."""

from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from accounts.models import Role
from accounts.scoping import NO_ORGANISATION, request_membership


class IsMember(BasePermission):
    """Signed in and a member of an organisation (every API object is scoped to it)."""

    message = NO_ORGANISATION

    def has_permission(self, request, view) -> bool:
        return _has_role(request, *Role.values)


class CanReview(BasePermission):
    """Reviewers and admins only."""

    message = "only reviewers and admins can review models"

    def has_permission(self, request, view) -> bool:
        return _has_role(request, Role.REVIEWER, Role.ADMIN)


def _has_role(request, *roles: str) -> bool:
    """``accounts.permissions.has_role`` with the membership looked up once per request."""
    try:
        return request_membership(request).role in roles
    except PermissionDenied:
        return False
