from __future__ import annotations

from django.apps import AppConfig


class PreflabConfig(AppConfig):
    """Project-wide pieces: roles, health, the home page and the demo commands."""

    name = "config"
    label = "preflab"
    verbose_name = "Preflab"
