"""The one background-job lifecycle (``config.jobs``), against every kind of job.

Each test runs for generation jobs, training runs and reward scorings: whatever a kind adds
(its resume checks, its messages), claim, cancel, resume, fail-stale and the watchdog are the
same code and must behave the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from config.jobs.lifecycle import JobLost, Lifecycle, background_job_models
from config.jobs.models import BackgroundJob, JobStatus
from config.tasks import background_jobs_watchdog
from generation.models import GenerationJob, GenerationShard
from generation.services import job_lifecycle
from tests.generation.factories import GenerationJobFactory, PromptSetFactory
from tests.training.factories import TrainingRunFactory, tiny_policy
from training.models import RewardScoring, TrainingRun
from training.runs import run_lifecycle
from training.scorings import scoring_lifecycle


@dataclass
class Kind:
    lifecycle: Lifecycle[Any]
    make: Callable[..., BackgroundJob]
    task: str  # the Celery task a resume queues, as "module.name"


def _generation(tmp_path: Path) -> Kind:
    return Kind(job_lifecycle, GenerationJobFactory, "generation.tasks.generation_job_run")


def _training(tmp_path: Path) -> Kind:
    # A resume checks that the base model's weights are still there.
    weights = tmp_path / "weights"
    weights.mkdir(exist_ok=True)
    base = tiny_policy(weights, name="base")
    return Kind(
        run_lifecycle,
        lambda **fields: TrainingRunFactory(base_model=base, **fields),
        "training.tasks.training_run_execute",
    )


def _scoring(tmp_path: Path) -> Kind:
    final = tmp_path / "reward-final"
    final.mkdir(exist_ok=True)
    reward = TrainingRunFactory(
        kind=TrainingRun.Kind.REWARD, status=TrainingRun.Status.SUCCEEDED, final_dir=str(final)
    )

    def make(**fields: Any) -> RewardScoring:
        job = GenerationJobFactory(status=GenerationJob.Status.SUCCEEDED)
        return RewardScoring.objects.create(reward_run=reward, job=job, **fields)

    return Kind(scoring_lifecycle, make, "training.tasks.reward_scoring_execute")


KINDS = {"generation job": _generation, "training run": _training, "reward scoring": _scoring}


@pytest.fixture(params=list(KINDS))
def kind(request, db, tmp_path: Path) -> Kind:  # type: ignore[no-untyped-def]
    return KINDS[request.param](tmp_path)


@pytest.fixture
def enqueued(monkeypatch, kind: Kind) -> list[int]:  # type: ignore[no-untyped-def]
    """The ids the kind's worker task was sent (its ``delay`` is replaced)."""
    import importlib

    module, name = kind.task.rsplit(".", 1)
    sent: list[int] = []
    monkeypatch.setattr(getattr(importlib.import_module(module), name), "delay", sent.append)
    return sent


def _reload(row: BackgroundJob) -> BackgroundJob:
    return type(row)._default_manager.get(pk=row.pk)


def test_every_kind_of_background_job_is_known_to_the_watchdog() -> None:
    assert set(background_job_models()) == {
        GenerationJob,
        GenerationShard,
        TrainingRun,
        RewardScoring,
    }


def test_it_lets_only_one_of_two_claims_win(kind: Kind) -> None:
    row = kind.make()
    assert [kind.lifecycle.claim(row.pk), kind.lifecycle.claim(row.pk)] == [True, False]
    row = _reload(row)
    assert row.status == JobStatus.RUNNING and row.attempts == 1
    assert row.started_at is not None and row.heartbeat_at is not None


def test_it_claims_each_queued_row_of_a_queue_once(kind: Kind) -> None:
    first, second = kind.make(), kind.make()
    kind.make(status=JobStatus.FAILED)
    claims = (kind.lifecycle.claim_next(), kind.lifecycle.claim_next())
    claimed = [row for row in claims if row is not None]
    assert [row.pk for row in claimed] == [first.pk, second.pk]
    assert all(row.status == JobStatus.RUNNING for row in claimed)
    assert kind.lifecycle.claim_next() is None


def test_it_runs_the_next_queued_row_of_a_queue(kind: Kind) -> None:
    first, second = kind.make(), kind.make()
    rows = type(first)._default_manager.filter(pk__in=[first.pk, second.pk])

    def work(job: BackgroundJob) -> None:
        kind.lifecycle.finish(job.pk, JobStatus.SUCCEEDED)

    ended = [kind.lifecycle.execute_next(rows, work, heartbeat_interval=60) for _ in range(3)]
    done = [row for row in ended[:2] if row is not None]
    assert [(row.pk, row.status) for row in done] == [
        (first.pk, JobStatus.SUCCEEDED),
        (second.pk, JobStatus.SUCCEEDED),
    ]
    assert ended[2] is None


def test_it_cancels_a_queued_row_at_once_and_flags_a_running_one(kind: Kind) -> None:
    queued = kind.lifecycle.cancel(kind.make())
    assert queued.status == JobStatus.CANCELLED and queued.finished_at is not None
    running = kind.lifecycle.cancel(kind.make(status=JobStatus.RUNNING))
    assert running.status == JobStatus.RUNNING and running.cancel_requested
    assert kind.lifecycle.cancel_requested(running.pk)
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        row = kind.make(status=status)
        with pytest.raises(kind.lifecycle.error, match=f"a {status} .* cannot be cancelled"):
            kind.lifecycle.cancel(row)
        assert _reload(row).status == status


def test_it_resumes_only_failed_or_cancelled_rows(
    kind: Kind, enqueued: list[int], django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    for status in (JobStatus.FAILED, JobStatus.CANCELLED):
        row = kind.make(status=status, error="worker died", finished_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            resumed = kind.lifecycle.resume(row)
        resumed = _reload(resumed)
        assert resumed.status == JobStatus.QUEUED
        assert (resumed.error, resumed.finished_at, resumed.cancel_requested) == ("", None, False)
        assert enqueued[-1] == row.pk
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED):
        row = kind.make(status=status)
        with pytest.raises(kind.lifecycle.error, match=f"a {status} .* cannot be resumed"):
            kind.lifecycle.resume(row)
        assert _reload(row).status == status
    assert len(enqueued) == 2


def test_it_fails_running_rows_whose_heartbeat_is_stale(kind: Kind) -> None:
    long_ago = timezone.now() - timedelta(minutes=10)
    stale = kind.make(status=JobStatus.RUNNING, heartbeat_at=long_ago, cancel_requested=True)
    fresh = kind.make(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    queued = kind.make(heartbeat_at=long_ago)
    assert kind.lifecycle.fail_stale(stale_after=timedelta(minutes=5)) == 1
    stale = _reload(stale)
    assert stale.status == JobStatus.FAILED and stale.finished_at is not None
    assert "stopped sending heartbeats for over 300 s" in stale.error
    assert type(stale).STALE_HINT in stale.error and not stale.cancel_requested
    assert (_reload(fresh).status, _reload(queued).status) == (JobStatus.RUNNING, JobStatus.QUEUED)


def test_it_fails_a_row_whose_work_raises_and_keeps_it_running_for_one_claim(kind: Kind) -> None:
    row = kind.make()

    def work(job: BackgroundJob) -> None:
        assert _reload(job).status == JobStatus.RUNNING
        # A second delivery of the same message finds the row taken.
        assert kind.lifecycle.execute(job.pk, work) == "skipped"
        raise kind.lifecycle.error("the weights are gone")

    assert kind.lifecycle.execute(row.pk, work, heartbeat_interval=60) == JobStatus.FAILED
    row = _reload(row)
    assert row.error == "the weights are gone" and row.attempts == 1
    assert row.finished_at is not None


def test_it_stops_quietly_when_the_row_is_lost_under_the_worker(kind: Kind) -> None:
    row = kind.make()

    def work(job: BackgroundJob) -> None:
        # The watchdog failed the row while the worker was between two writes.
        kind.lifecycle.fail_stale(stale_after=timedelta(seconds=-1))
        kind.lifecycle.update_running(job.pk, heartbeat_at=timezone.now())
        raise AssertionError("unreachable: the write above raises JobLost")

    with pytest.raises(JobLost):
        kind.lifecycle.update_running(row.pk, heartbeat_at=timezone.now())
    assert kind.lifecycle.execute(row.pk, work, heartbeat_interval=60) == JobStatus.FAILED
    assert "stopped sending heartbeats" in _reload(row).error


def test_it_finishes_a_cancelled_row_between_steps(kind: Kind) -> None:
    row = kind.make()

    def work(job: BackgroundJob) -> None:
        kind.lifecycle.cancel(job)
        if kind.lifecycle.cancel_requested(job.pk):
            kind.lifecycle.finish(job.pk, JobStatus.CANCELLED)

    assert kind.lifecycle.execute(row.pk, work, heartbeat_interval=60) == JobStatus.CANCELLED
    row = _reload(row)
    assert not row.cancel_requested and row.finished_at is not None


def test_the_watchdog_task_fails_stale_rows_of_every_kind(db, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GENERATION_STALE_AFTER_S = 60
    settings.TRAINING_STALE_AFTER_S = 60
    long_ago = timezone.now() - timedelta(minutes=2)
    rows = [
        make(tmp_path).make(status=JobStatus.RUNNING, heartbeat_at=long_ago)
        for make in KINDS.values()
    ]
    TrainingRunFactory(status=JobStatus.RUNNING, heartbeat_at=timezone.now())

    assert background_jobs_watchdog() == {
        "generation.GenerationJob": 1,
        "generation.GenerationShard": 0,
        "training.TrainingRun": 1,
        "training.RewardScoring": 1,
    }
    assert {_reload(row).status for row in rows} == {JobStatus.FAILED}
    assert background_jobs_watchdog() == {
        "generation.GenerationJob": 0,
        "generation.GenerationShard": 0,
        "training.TrainingRun": 0,
        "training.RewardScoring": 0,
    }


@pytest.mark.django_db(transaction=True)
def test_it_gives_each_of_many_workers_its_own_row() -> None:
    """Eight workers take from one queue of rows at once (FOR UPDATE SKIP LOCKED on
    PostgreSQL, the conditional UPDATE alone on SQLite): every row is claimed exactly once."""
    prompt_set = PromptSetFactory()
    rows = {GenerationJobFactory(prompt_set=prompt_set).pk for _ in range(16)}
    claims: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            while (
                row := job_lifecycle.claim_next(GenerationJob.objects.filter(pk__in=rows))
            ) is not None:
                claims.append(row.pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert sorted(claims) == sorted(rows)
    assert set(GenerationJob.objects.values_list("attempts", flat=True)) == {1}
