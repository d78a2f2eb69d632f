"""The Celery app. Queues: ``default``, ``generation`` and ``training``.

A GPU worker consumes only the heavy queues::

    celery -A config worker -Q generation,training --concurrency 1
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

QUEUES = ("default", "generation", "training")

app = Celery("preflab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.autodiscover_tasks()


def _ensure_embedded_broker_dirs() -> None:
    """Kombu's filesystem transport and the file result backend need their folders."""
    from django.conf import settings

    if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        for sub in ("queue", "control", "results"):
            (settings.CELERY_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)


@app.on_after_configure.connect
def _on_configure(sender: Celery, **kwargs: object) -> None:
    _ensure_embedded_broker_dirs()
