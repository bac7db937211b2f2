"""Role checks shared by the services, the web views and the API."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied

from accounts.models import Membership, Role
from accounts.scoping import member_of, membership_for


def has_role(user, *roles: str) -> bool:
    """True when the user has a membership with one of ``roles``."""
    try:
        return membership_for(user).role in roles
    except PermissionDenied:
        return False


def can_review(user) -> bool:
    """Reviewers and admins decide on models; analysts upload and train."""
    return has_role(user, Role.REVIEWER, Role.ADMIN)


def require_role(user, *roles: str) -> Membership:
    """The user's membership, or PermissionDenied when their role is not one of ``roles``."""
    membership = membership_for(user)
    if membership.role not in roles:
        raise PermissionDenied(f"this needs the role {' or '.join(roles)}")
    return membership


def require_same_organisation(user, organisation) -> Membership:
    """The user's membership, or PermissionDenied when ``organisation`` is not theirs."""
    return member_of(user, organisation, refusal="this belongs to another organisation")


def role_required(*roles: str):
    """View decorator: 403 unless the signed-in user has one of ``roles``."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            require_role(request.user, *roles)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


reviewer_required = role_required(Role.REVIEWER, Role.ADMIN)
