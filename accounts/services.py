"""Writes on users, roles and API tokens. Admin pages, the API and ``manage.py users`` call
these; permissions are checked by the caller."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from accounts.tokens import token_is_expired
from config.roles import ADMIN, ROLES


class AccountError(Exception):
    """A request the accounts services refuse; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@transaction.atomic
def user_role_set(*, user: User, role: str) -> None:
    """Give ``user`` exactly one role. Admins are staff (Django's admin opens for them);
    leaving the admin role takes staff status away, except from superusers."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", "role")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    user.groups.remove(*[g for name, g in groups.items() if name != role])  # type: ignore[attr-defined]
    user.groups.add(groups[role])  # type: ignore[attr-defined]
    is_staff = role == ADMIN or user.is_superuser  # type: ignore[attr-defined]
    if user.is_staff != is_staff:  # type: ignore[attr-defined]
        user.is_staff = is_staff  # type: ignore[attr-defined]
        user.save(update_fields=["is_staff"])
    if hasattr(user, "_preflab_roles"):
        del user._preflab_roles


@transaction.atomic
def user_create(*, username: str, role: str, email: str = "", password: str | None = None) -> User:
    """A new active user with one role. Without a password the account has an unusable one
    until its owner sets it through a one-time link (``user_password_link``)."""
    if User.objects.filter(username__iexact=username).exists():
        raise AccountError(f"a user named {username!r} already exists", "username")
    user = User(username=username, email=email)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    user_role_set(user=user, role=role)
    return user


@transaction.atomic
def user_set_active(*, user: User, active: bool, by: User | None = None) -> None:
    """Deactivate (the user can no longer log in or use the API; their labels stay) or
    reactivate an account. Deactivating also revokes the API token."""
    if not active and by is not None and by.pk == user.pk:
        raise AccountError("you cannot deactivate your own account", "is_active")
    user.is_active = active  # type: ignore[attr-defined]
    user.save(update_fields=["is_active"])
    if not active:
        token_revoke(user=user)


def user_set_password(*, user: User, password: str) -> None:
    """Set a password (validated elsewhere, by the form or command). Existing sessions end
    because the session hash changes; the API token is revoked."""
    user.set_password(password)
    user.save(update_fields=["password"])
    token_revoke(user=user)


def user_password_link(*, user: User, base_url: str) -> str:
    """A one-time link at which ``user`` sets a new password: Django's password-reset token,
    valid for ``PASSWORD_RESET_TIMEOUT`` seconds and spent once the password changes."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)  # type: ignore[arg-type]
    path = reverse("accounts:set-password", kwargs={"uidb64": uid, "token": token})
    return base_url.rstrip("/") + path


def user_password_link_send(*, user: User, base_url: str) -> str:
    """Mail the one-time link through Django's email backend; return it as well."""
    email = getattr(user, "email", "")
    if not email:
        raise AccountError("this user has no email address; copy the link instead", "email")
    link = user_password_link(user=user, base_url=base_url)
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    send_mail(
        subject="Set your Preflab password",
        message=(
            f"Hello {user.get_username()},\n\n"
            f"Set your Preflab password here (the link works once, for {hours} hours):\n\n"
            f"{link}\n"
        ),
        from_email=None,
        recipient_list=[email],
    )
    return link


@dataclass(frozen=True)
class IssuedToken:
    key: str
    created: bool


@transaction.atomic
def token_issue(*, user: User, rotate: bool = False) -> IssuedToken:
    """The user's API token: the current one, or a new one when there is none, it expired,
    or ``rotate`` asks for a fresh key."""
    token = Token.objects.select_for_update().filter(user=user).first()
    if token is not None and not rotate and not token_is_expired(token):
        return IssuedToken(key=token.key, created=False)
    if token is not None:
        token.delete()
    token = Token.objects.create(user=user)  # DRF draws the key
    return IssuedToken(key=token.key, created=True)


def token_revoke(*, user: User) -> bool:
    """Delete the user's API token; True when there was one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0
