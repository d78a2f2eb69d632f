"""The Django progress reporter: throttled writes, every point kept, the cancel flag."""

from __future__ import annotations

import math

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.training.factories import TrainingRunFactory
from training.core.reporting import ProgressReporter
from training.models import TrainingMetric, TrainingRun
from training.reporting import LOG_LINES, RunReporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def run(db) -> TrainingRun:  # type: ignore[no-untyped-def]
    return TrainingRunFactory(status=TrainingRun.Status.RUNNING)


def _writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]


def test_it_is_a_progress_reporter(run) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(RunReporter(run.pk), ProgressReporter)


def test_it_writes_at_most_once_per_interval_and_keeps_every_point(run) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    reporter = RunReporter(run.pk, interval=2.0, clock=clock)
    with CaptureQueriesContext(connection) as queries:
        for step in range(1, 101):
            reporter.report(step, 1000, {"loss": 1.0 / step})
            clock.now += 0.01  # 100 steps in 1 s
    # The first report is written at once; the next 99 wait for the interval.
    assert len(_writes(queries)) == 1
    run.refresh_from_db()
    assert run.step == 1 and run.total_steps == 1000 and run.metrics == {"loss": 1.0}
    assert TrainingMetric.objects.filter(run=run).count() == 1

    clock.now += 1.0  # 2 s after the first write
    with CaptureQueriesContext(connection) as queries:
        reporter.report(101, 1000, {"loss": 0.5})
        reporter.report(102, 1000, {"loss": 0.25})
    assert len(_writes(queries)) == 1
    run.refresh_from_db()
    assert run.step == 101 and run.heartbeat_at is not None

    reporter.report(103, 1000, {"loss": 0.125})
    reporter.flush()
    run.refresh_from_db()
    assert run.step == 103 and run.metrics == {"loss": 0.125}
    steps = list(TrainingMetric.objects.filter(run=run).values_list("step", flat=True))
    assert steps == list(range(1, 104))


def test_it_reads_the_cancel_flag_at_most_once_per_interval(run) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    reporter = RunReporter(run.pk, interval=2.0, clock=clock)
    assert reporter.should_stop() is False
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    clock.now += 1.0
    with CaptureQueriesContext(connection) as queries:
        assert reporter.should_stop() is False  # not read again yet
    assert not queries.captured_queries
    clock.now += 1.0
    assert reporter.should_stop() is True
    assert reporter.should_stop() is True


def test_it_stops_a_run_that_is_no_longer_running(run) -> None:  # type: ignore[no-untyped-def]
    reporter = RunReporter(run.pk, interval=0)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED)
    assert reporter.should_stop() is True


def test_it_does_not_write_to_a_run_the_watchdog_failed(run) -> None:  # type: ignore[no-untyped-def]
    reporter = RunReporter(run.pk, interval=0)
    reporter.report(1, 10, {"loss": 1.0})
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED, error="stale")
    reporter.report(2, 10, {"loss": 0.5})
    reporter.log("saving")
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.step == 1 and run.log_tail == ""
    assert list(TrainingMetric.objects.filter(run=run).values_list("step", flat=True)) == [1]


def test_it_turns_nan_and_infinity_into_null(run) -> None:  # type: ignore[no-untyped-def]
    reporter = RunReporter(run.pk, interval=0)
    reporter.report(1, 2, {"loss": math.nan, "kl": math.inf, "rewards/margins": 0.5})
    run.refresh_from_db()
    assert run.metrics == {"loss": None, "kl": None, "rewards/margins": 0.5}
    assert TrainingMetric.objects.get(run=run).values == run.metrics


def test_it_keeps_the_last_lines_of_the_log_after_earlier_attempts(run) -> None:  # type: ignore[no-untyped-def]
    TrainingRun.objects.filter(pk=run.pk).update(log_tail="attempt 1\nloaded")
    clock = Clock()
    reporter = RunReporter(run.pk, interval=2.0, clock=clock)
    reporter.log("attempt 2")
    for i in range(LOG_LINES + 50):
        reporter.log(f"line {i}")
    run.refresh_from_db()
    assert run.log_tail == "attempt 1\nloaded\nattempt 2"  # throttled after the first write
    reporter.flush()
    run.refresh_from_db()
    lines = run.log_tail.splitlines()
    assert len(lines) == LOG_LINES
    assert lines[0] == "line 50" and lines[-1] == f"line {LOG_LINES + 49}"


def test_it_merges_the_reports_of_one_step_into_the_latest_metrics(run) -> None:  # type: ignore[no-untyped-def]
    reporter = RunReporter(run.pk, interval=0)
    reporter.report(1, 2, {"loss": 0.9})
    reporter.report(2, 2, {"loss": 0.7})
    reporter.report(2, 2, {"eval/loss": 0.8})
    run.refresh_from_db()
    assert run.metrics == {"loss": 0.7, "eval/loss": 0.8}
    assert TrainingMetric.objects.filter(run=run).count() == 3
