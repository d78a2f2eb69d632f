"""A thread that keeps a running row's ``heartbeat_at`` fresh while its worker is alive.

Generation jobs, training runs and reward scorings share it. A step can take longer than
the watchdog's patience (loading a large model, one slow batch), so the heartbeat beats
from its own thread rather than from the work loop: it stops only when the process dies,
and then the periodic watchdog fails the row, which a resume picks up.
"""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, close_old_connections, connection, models
from django.utils import timezone

from config.db_retry import db_write_retry

logger = logging.getLogger(__name__)


class Heartbeat:
    """``with Heartbeat(Model, pk, interval):`` touches the row every ``interval`` seconds
    while its status is ``running``."""

    def __init__(self, model: type[models.Model], pk: int, interval: float) -> None:
        self.model = model
        self.pk = pk
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"heartbeat-{model.__name__}-{pk}"
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def beat(self) -> None:
        """One heartbeat, retried while the database is locked; a beat that still fails is
        logged and the next one tried, so the thread lives as long as the work does."""
        try:
            db_write_retry(self._touch, what=f"heartbeat of {self.model.__name__} {self.pk}")
        except DatabaseError as exc:
            logger.warning("heartbeat of %s %s skipped: %s", self.model.__name__, self.pk, exc)

    def _touch(self) -> int:
        return self.model._default_manager.filter(pk=self.pk, status="running").update(
            heartbeat_at=timezone.now()
        )

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.beat()
        finally:
            # This thread's own connection would keep the database busy after the work.
            close_old_connections()
            connection.close()
