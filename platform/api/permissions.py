"""API permissions: members of an organisation; reviewers for decisions."""

from rest_framework.permissions import BasePermission

from accounts.models import Role
from accounts.permissions import can_review, has_role


class IsMember(BasePermission):
    """Signed in and a member of an organisation (every API object is scoped to it)."""

    message = "your account belongs to no organisation"

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated) and has_role(
            request.user, *Role.values
        )


class CanReview(BasePermission):
    """Reviewers and admins only."""

    message = "only reviewers and admins can review models"

    def has_permission(self, request, view) -> bool:
        return can_review(request.user)
