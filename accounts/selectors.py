"""Reads on users and tokens, for admins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import QuerySet
from rest_framework.authtoken.models import Token

from accounts.tokens import token_expires_at, token_is_expired
from config.roles import ADMIN, ANNOTATOR, RESEARCHER, user_roles


def user_list() -> QuerySet[User]:
    """People who can sign in or could again (pseudo-users such as AI labelers and imported
    annotators, which have no usable password and never had a login, are left out)."""
    return (
        User.objects.exclude(password__startswith="!", last_login__isnull=True, is_active=False)
        .prefetch_related("groups")
        .select_related("auth_token")
        .order_by("username")
    )


def user_role(user: User) -> str:
    """The one role the admin pages show: the highest the user holds, or "" for none."""
    roles = user_roles(user)
    for role in (ADMIN, RESEARCHER, ANNOTATOR):
        if role in roles:
            return role
    return ""


@dataclass(frozen=True)
class TokenInfo:
    key_prefix: str
    created: datetime
    expires: datetime | None
    expired: bool


def user_token(user: User) -> TokenInfo | None:
    token = Token.objects.filter(user=user).first()
    if token is None:
        return None
    return TokenInfo(
        key_prefix=token.key[:6],
        created=token.created,
        expires=token_expires_at(token),
        expired=token_is_expired(token),
    )
