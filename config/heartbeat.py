"""A thread that keeps a running row's ``heartbeat_at`` fresh while its worker is alive.

Generation jobs, training runs and reward scorings share it. A step can take longer than
the watchdog's patience (loading a large model, one slow batch), so the heartbeat beats
from its own thread rather than from the work loop: it stops only when the process dies,
and then the periodic watchdog fails the row, which a resume picks up.
"""

from __future__ import annotations

import threading

from django.db import close_old_connections, connection, models
from django.utils import timezone


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

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.model._default_manager.filter(pk=self.pk, status="running").update(
                    heartbeat_at=timezone.now()
                )
        finally:
            # This thread's own connection would keep the database busy after the work.
            close_old_connections()
            connection.close()
