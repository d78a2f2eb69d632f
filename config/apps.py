from __future__ import annotations

from django.apps import AppConfig


class PreflabConfig(AppConfig):
    """Settings and the small shared core every app uses: roles, heartbeat, naming, rendering,
    bounds, middleware, health and the home page (the demo is its own app, ``demo``)."""

    name = "config"
    label = "preflab"
    verbose_name = "Preflab"
