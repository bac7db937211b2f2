from __future__ import annotations

from django.conf import settings
from django.db import models


class Organisation(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # How long a sign-in lasts for this organisation's users, from sign-in (accounts.sessions);
    # None: the deployment's SESSION_COOKIE_AGE. Its admin sets it.
    session_lifetime_minutes = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ANALYST = "analyst", "Analyst"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


# Who decides on models (review, promote, retire, mitigate, audit).
REVIEWER_ROLES = (Role.REVIEWER, Role.ADMIN)


class Membership(models.Model):
    """A user's place in one organisation. A user belongs to exactly one organisation."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANALYST)

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation} ({self.role})"

    @property
    def can_review(self) -> bool:
        return self.role in REVIEWER_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN
