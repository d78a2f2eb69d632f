"""The progress reporter a runner talks to, written onto a ``TrainingRun`` row.

A runner calls :meth:`RunReporter.report` on every logged step; writing each call to the
database would make a fast loop wait on it, so points are buffered and the run's progress,
latest metrics, log tail and heartbeat are written at most every ``interval`` seconds (the
first report at once, so a new run shows progress early), and by :meth:`flush` at the end.
Every point is kept. Every write is conditional on the run still running: a run the
watchdog failed is not brought back by a late write, and ``should_stop`` then says stop.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from django.db import OperationalError, transaction
from django.utils import timezone

from config.db_retry import db_write_retry
from training.models import TrainingMetric, TrainingRun

logger = logging.getLogger(__name__)

LOG_LINES = 200


def json_safe_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Metric values as JSON numbers: NaN and infinities become None (JSON has neither)."""
    safe: dict[str, float | None] = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            safe[str(name)] = None
            continue
        safe[str(name)] = number if math.isfinite(number) else None
    return safe


class RunReporter:
    """:class:`training.core.reporting.ProgressReporter` on the row of run ``run_id``."""

    def __init__(
        self,
        run_id: int,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.interval = interval
        self._clock = clock
        self._points: list[TrainingMetric] = []
        self._progress: tuple[int, int, dict[str, float | None]] | None = None
        self._latest: tuple[int, dict[str, float | None]] | None = None
        existing = TrainingRun.objects.filter(pk=run_id).values_list("log_tail", flat=True).first()
        # Earlier attempts' lines stay at the top of the tail.
        self._lines: deque[str] = deque((existing or "").splitlines(), maxlen=LOG_LINES)
        self._lines_dirty = False
        self._last_write = -math.inf
        self._last_stop_check = -math.inf
        self._stop = False

    # --- ProgressReporter ------------------------------------------------------------------

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        values = json_safe_metrics(metrics)
        self._points.append(TrainingMetric(run_id=self.run_id, step=int(step), values=values))
        # Several reports of one step (training, then held-out metrics) add up to its picture.
        if self._latest is not None and self._latest[0] == int(step):
            values = {**self._latest[1], **values}
        self._latest = (int(step), values)
        self._progress = (int(step), int(total_steps), values)
        self._maybe_flush()

    def log(self, line: str) -> None:
        for part in str(line).splitlines() or [""]:
            self._lines.append(part)
        self._lines_dirty = True
        self._maybe_flush()

    def should_stop(self) -> bool:
        now = self._clock()
        if not self._stop and now - self._last_stop_check >= self.interval:
            self._last_stop_check = now
            state = (
                TrainingRun.objects.filter(pk=self.run_id)
                .values_list("status", "cancel_requested")
                .first()
            )
            # Cancelled, or no longer ours (the watchdog failed it, or it was deleted).
            self._stop = state is None or state[1] or state[0] != TrainingRun.Status.RUNNING
        return self._stop

    # --- writing ---------------------------------------------------------------------------

    @property
    def log_tail(self) -> str:
        return "\n".join(self._lines)

    def _maybe_flush(self) -> None:
        if self._clock() - self._last_write >= self.interval:
            try:
                self.flush()
            except OperationalError as exc:
                # Still locked after the retries: keep training; the buffered points and
                # progress were put back and go out with the next flush.
                logger.warning("progress of run %s not written yet: %s", self.run_id, exc)

    def flush(self) -> bool:
        """Write what is buffered now; False when the run is no longer running (dropped)."""
        self._last_write = self._clock()
        if self._progress is None and not self._lines_dirty and not self._points:
            return True
        fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
        if self._progress is not None:
            step, total, values = self._progress
            fields.update(step=step, total_steps=max(total, 0), metrics=values)
        if self._lines_dirty:
            fields["log_tail"] = self.log_tail
        points, self._points = self._points, []
        progress, lines_dirty = self._progress, self._lines_dirty
        self._progress, self._lines_dirty = None, False

        def write() -> int:
            with transaction.atomic():
                updated = TrainingRun.objects.filter(
                    pk=self.run_id, status=TrainingRun.Status.RUNNING
                ).update(**fields)
                if updated and points:
                    TrainingMetric.objects.bulk_create(points, batch_size=1000)
            return updated

        try:
            updated = db_write_retry(write, what=f"progress of run {self.run_id}")
        except OperationalError:
            self._points = points + self._points
            self._progress = self._progress or progress
            self._lines_dirty = self._lines_dirty or lines_dirty
            raise
        return bool(updated)
