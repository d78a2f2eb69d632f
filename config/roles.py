"""The three roles, held as auth groups: annotator, researcher and admin, and how every
view declares who may use it.

An admin is a staff user in the ``admin`` group (superusers count as admins too).

Access is declared once per view, never checked by hand in a handler: a page with
``role_required`` (or ``signed_in_required``), an API view with ``permission_classes`` built
from the classes below (``ResearcherAPIView`` for the generation and training APIs). What a
user may see of one object (another annotator's task is a 404) stays in the selectors.
``tests/config/test_permissions.py`` walks every URL and fails on a view that declares nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ClassVar, TypeVar

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.views import APIView

ANNOTATOR = "annotator"
RESEARCHER = "researcher"
ADMIN = "admin"
ROLES = (ANNOTATOR, RESEARCHER, ADMIN)

F = TypeVar("F", bound=Callable[..., Any])
AnyUser = User | AnonymousUser


def user_roles(user: AnyUser) -> set[str]:
    if isinstance(user, AnonymousUser) or not user.is_authenticated:
        return set()
    cached: set[str] | None = getattr(user, "_preflab_roles", None)
    if cached is not None:
        return cached
    roles = set(user.groups.values_list("name", flat=True)) & set(ROLES)
    if user.is_superuser or (user.is_staff and ADMIN in roles):
        roles.add(ADMIN)
    else:
        roles.discard(ADMIN)  # the admin group without staff status grants nothing
    # A cache on the instance, for the many checks of one request; User does not declare it.
    user._preflab_roles = roles  # type: ignore[attr-defined]
    return roles


def user_is_admin(user: AnyUser) -> bool:
    return ADMIN in user_roles(user)


def user_is_researcher(user: AnyUser) -> bool:
    """Researchers read and export data; admins can do everything researchers can."""
    return bool({RESEARCHER, ADMIN} & user_roles(user))


def user_is_annotator(user: AnyUser) -> bool:
    return ANNOTATOR in user_roles(user)


def user_role_add(*, user: User, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    if role == ADMIN and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if hasattr(user, "_preflab_roles"):
        del user._preflab_roles


def pseudo_user_get_or_create(*, username: str, last_name: str = "") -> User:
    """An account that stands for a non-person (an imported dataset's annotators, an AI
    labeler): inactive, with no usable password, so it can never sign in."""
    user, created = User.objects.get_or_create(
        username=username, defaults={"is_active": False, "last_name": last_name}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


_CHECKS: dict[str, Callable[[AnyUser], bool]] = {
    ADMIN: user_is_admin,
    RESEARCHER: user_is_researcher,
    ANNOTATOR: user_is_annotator,
}


def user_has_role(user: AnyUser, roles: Iterable[str]) -> bool:
    """Whether ``user`` holds one of ``roles`` (an admin holds researcher too)."""
    return any(_CHECKS[role](user) for role in roles)


def roles_context(request: HttpRequest) -> dict[str, bool]:
    user = getattr(request, "user", AnonymousUser())
    return {
        "is_admin": user_is_admin(user),
        "is_researcher": user_is_researcher(user),
        "is_annotator": user_is_annotator(user),
    }


# --- pages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageAccess:
    """Who may use a page, as its decorator declared it (``view.preflab_access``).

    ``roles`` empty: any signed-in user. ``write_roles`` non-empty: a request that changes
    something (POST, PUT, PATCH, DELETE) needs one of those instead of ``roles``.
    """

    roles: tuple[str, ...]
    write_roles: tuple[str, ...] = ()

    def roles_for(self, method: str) -> tuple[str, ...]:
        return self.write_roles if self.write_roles and method not in SAFE_METHODS else self.roles


def page_access(view: Callable[..., Any]) -> PageAccess | None:
    """The access a page's decorator declared, or None when it declared none."""
    return getattr(view, "preflab_access", None)


def _guard(access: PageAccess) -> Callable[[F], F]:
    for role in access.roles + access.write_roles:
        if role not in _CHECKS:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            roles = access.roles_for(request.method or "GET")
            if roles and not user_has_role(request.user, roles):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        guarded = login_required(wrapped)
        guarded.preflab_access = access  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorator


def role_required(*roles: str, write: str | tuple[str, ...] = ()) -> Callable[[F], F]:
    """Login required, then 403 unless the user holds one of ``roles``; with ``write``, a
    request that changes something needs one of the ``write`` roles instead (researchers
    read a page whose form only admins may submit)."""
    write_roles = (write,) if isinstance(write, str) else tuple(write)
    if not roles:
        raise ValueError("role_required needs a role; use signed_in_required for any user")
    return _guard(PageAccess(roles=tuple(roles), write_roles=write_roles))


def signed_in_required(view: F) -> F:
    """Login required, whatever the user's roles (the home page, one's own account)."""
    return _guard(PageAccess(roles=()))(view)


class AuthenticatedRequest(HttpRequest):
    """The request a page behind ``role_required`` or ``signed_in_required`` receives."""

    user: User


# --- API views --------------------------------------------------------------------------------


class RolePermission(BasePermission):
    """Grants a request whose user holds one of ``roles``; ``who`` says so in the API docs."""

    roles: ClassVar[tuple[str, ...]] = ()
    who: ClassVar[str] = ""

    def has_permission(self, request: Any, view: Any) -> bool:
        return user_has_role(request.user, self.roles)


class IsPreflabAdmin(RolePermission):
    roles = (ADMIN,)
    who = "admins"


class IsResearcher(RolePermission):
    roles = (RESEARCHER,)
    who = "researchers and admins"


class CanLabel(RolePermission):
    roles = (ANNOTATOR, ADMIN)
    who = "annotators and admins"


class CanReadQueues(RolePermission):
    roles = (ANNOTATOR, RESEARCHER)
    who = "annotators, researchers and admins"


class HiddenRolePermission(RolePermission):
    """A role permission whose refusal of a signed-in user is a 404, as if nothing were
    there: annotators label blind and must not learn that jobs, runs or models exist."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if super().has_permission(request, view):
            return True
        if request.user and request.user.is_authenticated:
            raise Http404
        return False


class HiddenFromNonResearchers(HiddenRolePermission):
    roles = IsResearcher.roles
    who = "researchers and admins (others get 404)"


class HiddenFromNonAdmins(HiddenRolePermission):
    roles = IsPreflabAdmin.roles
    who = "admins (others get 404)"


class AdminWrites(BasePermission):
    """Reads pass (the view's other permissions decide them); writes need an admin."""

    message = "Only admins can change this."

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        # A method the view does not implement is a 405 from the view, not a 403 from here.
        if not hasattr(view, request.method.lower()):
            return True
        return user_is_admin(request.user)


# The base of the generation and training APIs: researchers and admins read, only admins
# write; annotators get 404s (they label blind). No docstring: the API docs would show it on
# every endpoint.
class ResearcherAPIView(APIView):
    permission_classes = [IsAuthenticated, HiddenFromNonResearchers, AdminWrites]
