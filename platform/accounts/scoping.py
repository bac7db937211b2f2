"""Organisation scoping: every query a user's request makes goes through here.

A user belongs to exactly one organisation (``Membership``). Objects belong to an
organisation directly (``organisation`` field) or through a chain of foreign keys
(a ``DatasetVersion`` through its ``Dataset``); the path is found from the model's fields,
so this module needs to know no other app's models.
"""

from __future__ import annotations

from functools import cache

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404

from accounts.models import Membership, Organisation

_MAX_DEPTH = 3
NO_ORGANISATION = "your account belongs to no organisation"


def membership_for(user) -> Membership:
    """The user's membership; PermissionDenied for anonymous users and users without one."""
    if user is None or not getattr(user, "is_authenticated", False):
        raise PermissionDenied("sign in first")
    try:
        return Membership.objects.select_related("organisation").get(user=user)
    except Membership.DoesNotExist:
        raise PermissionDenied(NO_ORGANISATION) from None


def request_membership(request) -> Membership:
    """``membership_for(request.user)``, looked up once per request: the permission check
    and the queryset scoping of one API request both ask for it."""
    user = request.user
    cached = getattr(request, "_tessera_membership", None)
    if cached is not None and cached[0] is user:
        return cached[1]
    authenticator = getattr(request, "successful_authenticator", None)
    if getattr(authenticator, "loads_membership", False):  # loaded with this request's user
        membership = getattr(user, "membership", None)
        if membership is None:
            raise PermissionDenied(NO_ORGANISATION)
    else:
        membership = membership_for(user)
    request._tessera_membership = (user, membership)
    return membership


@cache
def organisation_path(model: type[models.Model]) -> str:
    """The lookup from ``model`` to its Organisation, e.g. ``"dataset__organisation"``.

    Breadth-first over forward foreign keys and one-to-one fields, so the shortest path wins.
    """
    queue: list[tuple[type[models.Model], str, int]] = [(model, "", 0)]
    while queue:
        current, prefix, depth = queue.pop(0)
        for field in current._meta.get_fields():
            if not (field.is_relation and (field.many_to_one or field.one_to_one)):
                continue
            if field.auto_created and not field.concrete:  # reverse one-to-one
                continue
            name = f"{prefix}{field.name}"
            if field.related_model is Organisation:
                return name
            if depth + 1 < _MAX_DEPTH:
                queue.append((field.related_model, f"{name}__", depth + 1))
    raise LookupError(f"{model.__name__} has no path to an Organisation")


def for_user(queryset: models.QuerySet, user) -> models.QuerySet:
    """``queryset`` restricted to the user's organisation; empty when the user has none."""
    try:
        membership = membership_for(user)
    except PermissionDenied:
        return queryset.none()
    return for_membership(queryset, membership)


def for_membership(queryset: models.QuerySet, membership: Membership) -> models.QuerySet:
    """``queryset`` restricted to ``membership``'s organisation."""
    return queryset.filter(**{organisation_path(queryset.model): membership.organisation_id})


def for_request(queryset: models.QuerySet, request) -> models.QuerySet:
    """``for_user`` for ``request.user``, with the membership looked up once per request."""
    try:
        membership = request_membership(request)
    except PermissionDenied:
        return queryset.none()
    return for_membership(queryset, membership)


def get_scoped_or_404(model_or_queryset, user, **lookup):
    """Like ``get_object_or_404``, but another organisation's object is simply not found."""
    queryset = (
        model_or_queryset
        if isinstance(model_or_queryset, models.QuerySet)
        else model_or_queryset._default_manager.all()
    )
    try:
        return for_user(queryset, user).get(**lookup)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise Http404(f"no {queryset.model._meta.verbose_name} matches the query") from None


def organisation_id_of(obj: models.Model) -> int:
    """The id of the organisation ``obj`` belongs to (``obj`` itself for an Organisation),
    read from the last foreign key on the path: no query for the organisation itself."""
    if isinstance(obj, Organisation):
        return obj.pk
    *hops, last = organisation_path(type(obj)).split("__")
    target = obj
    for part in hops:
        target = getattr(target, part)
    return getattr(target, f"{last}_id")


def member_of(user, obj: models.Model, *, roles: tuple[str, ...] = (),
              refusal: str | None = None) -> Membership:
    """The one organisation check of the services: the user's membership when ``obj``
    belongs to their organisation and, given ``roles``, their role is one of them.

    PermissionDenied otherwise, with ``refusal`` when given (else "this <object> belongs to
    another organisation" or the roles needed). Views and the API scope their queries with
    :func:`for_request` / :func:`get_scoped_or_404`; services that are handed an object
    check it with this.
    """
    membership = membership_for(user)
    if membership.organisation_id != organisation_id_of(obj):
        raise PermissionDenied(refusal or f"this {obj._meta.verbose_name} belongs to another "
                                          "organisation")
    if roles and membership.role not in roles:
        raise PermissionDenied(refusal or f"this needs the role {' or '.join(roles)}")
    return membership


def organisation_of(obj: models.Model) -> Organisation:
    """The organisation an object belongs to, following the same path as ``for_user``."""
    target = obj
    for part in organisation_path(type(obj)).split("__"):
        target = getattr(target, part)
    return target
