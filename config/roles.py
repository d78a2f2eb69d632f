"""The three roles, held as auth groups: annotator, researcher and admin.

An admin is a staff user in the ``admin`` group (superusers count as admins too).
Views guard with ``role_required``; DRF views with the permission classes below.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.permissions import BasePermission

ANNOTATOR = "annotator"
RESEARCHER = "researcher"
ADMIN = "admin"
ROLES = (ANNOTATOR, RESEARCHER, ADMIN)

F = TypeVar("F", bound=Callable[..., Any])
AnyUser = AbstractBaseUser | AnonymousUser


def user_roles(user: AnyUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached: set[str] | None = getattr(user, "_preflab_roles", None)
    if cached is not None:
        return cached
    roles = set(user.groups.values_list("name", flat=True)) & set(ROLES)  # type: ignore[union-attr]
    if user.is_superuser or (user.is_staff and ADMIN in roles):  # type: ignore[union-attr]
        roles.add(ADMIN)
    else:
        roles.discard(ADMIN)  # the admin group without staff status grants nothing
    user._preflab_roles = roles  # type: ignore[union-attr]
    return roles


def user_is_admin(user: AnyUser) -> bool:
    return ADMIN in user_roles(user)


def user_is_researcher(user: AnyUser) -> bool:
    """Researchers read and export data; admins can do everything researchers can."""
    return bool({RESEARCHER, ADMIN} & user_roles(user))


def user_is_annotator(user: AnyUser) -> bool:
    return ANNOTATOR in user_roles(user)


def user_role_add(*, user: AbstractBaseUser, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)  # type: ignore[attr-defined]
    if role == ADMIN and not user.is_staff:  # type: ignore[attr-defined]
        user.is_staff = True  # type: ignore[attr-defined]
        user.save(update_fields=["is_staff"])
    if hasattr(user, "_preflab_roles"):
        del user._preflab_roles


def pseudo_user_get_or_create(*, username: str, last_name: str = "") -> AbstractBaseUser:
    """An account that stands for a non-person (an imported dataset's annotators, an AI
    labeler): inactive, with no usable password, so it can never sign in."""
    from django.contrib.auth import get_user_model

    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"is_active": False, "last_name": last_name}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user  # type: ignore[no-any-return]


_CHECKS: dict[str, Callable[[AnyUser], bool]] = {
    ADMIN: user_is_admin,
    RESEARCHER: user_is_researcher,
    ANNOTATOR: user_is_annotator,
}


def role_required(*roles: str) -> Callable[[F], F]:
    """Login required, then 403 unless the user holds one of ``roles``."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not any(_CHECKS[role](request.user) for role in roles):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(wrapped)  # type: ignore[return-value]

    return decorator


def roles_context(request: HttpRequest) -> dict[str, bool]:
    user = getattr(request, "user", AnonymousUser())
    return {
        "is_admin": user_is_admin(user),
        "is_researcher": user_is_researcher(user),
        "is_annotator": user_is_annotator(user),
    }


class IsPreflabAdmin(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        return user_is_admin(request.user)


class IsResearcher(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        return user_is_researcher(request.user)
