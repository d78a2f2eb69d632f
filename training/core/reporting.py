"""How a training loop tells the outside world how it is doing, and learns it should stop.

Runners take a :class:`ProgressReporter` and call it between steps; they never write to a
database or a log file themselves. The Django side implements the protocol on top of a
``TrainingRun`` row: it throttles the writes (progress, the latest metrics and a heartbeat
at most every few seconds, not on every step), and ``should_stop`` reads the run's cancel
flag, also throttled. :class:`NullReporter` discards everything; :class:`ListReporter`
records everything, for tests.

Standard library only: importing this module imports neither Django nor torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["ListReporter", "NullReporter", "ProgressReporter", "Report", "metrics_to_floats"]


@runtime_checkable
class ProgressReporter(Protocol):
    """What a training loop reports to; every method must be cheap to call on every step."""

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        """After optimizer step ``step`` of ``total_steps``: the latest metrics, as floats.

        ``total_steps`` is the best current estimate and may be 0 when unknown. Metric names
        follow the house vocabulary (``loss``, ``rewards/chosen``, ``kl``, ...).
        """
        ...

    def log(self, line: str) -> None:
        """One human-readable line for the run's log (loading, saving, warnings)."""
        ...

    def should_stop(self) -> bool:
        """True once someone asked the run to stop; the loop checks it between steps,
        saves what it has and returns."""
        ...


def metrics_to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Turn a losses' metrics dict (0-dim tensors, numbers) into plain floats for reporting."""
    return {name: float(value) for name, value in metrics.items()}


class NullReporter:
    """Discards every report and never asks to stop."""

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@dataclass(frozen=True)
class Report:
    step: int
    total_steps: int
    metrics: dict[str, float]


@dataclass
class ListReporter:
    """Keeps every report and log line in lists, for tests.

    Set ``stop_at_step`` to have ``should_stop`` turn true once a report for that step (or a
    later one) has arrived, or call :meth:`request_stop` to stop at the next check.
    """

    stop_at_step: int | None = None
    reports: list[Report] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    stop_requested: bool = False

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.reports.append(Report(step, total_steps, dict(metrics)))
        if self.stop_at_step is not None and step >= self.stop_at_step:
            self.stop_requested = True

    def log(self, line: str) -> None:
        self.lines.append(line)

    def should_stop(self) -> bool:
        return self.stop_requested

    def request_stop(self) -> None:
        self.stop_requested = True

    @property
    def last_metrics(self) -> dict[str, float]:
        """Metrics of the latest report; empty before the first."""
        return self.reports[-1].metrics if self.reports else {}
