from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo: ``seed_demo`` (users, prompts, models, jobs, queues, a snapshot) and
    ``rundemo``. The top layer: it may import every app, and no app imports it."""

    name = "demo"
    verbose_name = "Preflab demo"
