"""API tokens: DRF's ``Token`` model (one per user), with an age limit.

A token older than ``PREFLAB_TOKEN_TTL_DAYS`` days (0: no limit) stops authenticating; the
user gets a fresh one from ``POST /api/token/`` or their account page. Logging out of the
browser revokes the token too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


def token_expires_at(token: Token) -> Any:
    """When ``token`` stops working, or None when tokens do not expire."""
    days = settings.PREFLAB_TOKEN_TTL_DAYS
    return token.created + timedelta(days=days) if days else None


def token_is_expired(token: Token) -> bool:
    expires = token_expires_at(token)
    return expires is not None and expires <= timezone.now()


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing tokens past their age limit."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user, token = super().authenticate_credentials(key)
        if token_is_expired(token):
            raise AuthenticationFailed("Token expired: get a new one from POST /api/token/.")
        return user, token
