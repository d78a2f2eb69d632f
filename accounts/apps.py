from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """People, roles and API tokens: Django's auth users and DRF's token model."""

    name = "accounts"
    verbose_name = "Accounts"
