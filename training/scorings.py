"""Reward scorings: a finished reward run scores every completion of a generation job."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Avg, F
from django.utils import timezone

from config.heartbeat import Heartbeat
from generation.models import Completion, GenerationJob
from training import datasets
from training.core.runners import TrainingError
from training.models import CompletionReward, RewardScoring, TrainingRun
from training.runs import RunError, reward_run_check_finished

logger = logging.getLogger(__name__)

SCORING_CHUNK = 256


@transaction.atomic
def reward_scoring_create(
    *, reward_run: TrainingRun, job: GenerationJob, user: AbstractBaseUser | None = None
) -> RewardScoring:
    """Queue scoring every completion of ``job`` with the reward model of ``reward_run``."""
    reward_run_check_finished(reward_run)
    if job.status != GenerationJob.Status.SUCCEEDED:
        raise RunError(f"job {job} has not finished successfully", field="job")
    total = Completion.objects.filter(job=job).count()
    if not total:
        raise RunError(f"job {job} has no completions", field="job")
    if RewardScoring.objects.filter(
        reward_run=reward_run,
        job=job,
        status__in=(RewardScoring.Status.QUEUED, RewardScoring.Status.RUNNING),
    ).exists():
        raise RunError(f"{reward_run.name!r} is already scoring job {job}", field="job")
    scoring = RewardScoring.objects.create(
        reward_run=reward_run, job=job, total=total, created_by=user
    )
    scoring_id = scoring.pk

    from training.tasks import reward_scoring_execute

    transaction.on_commit(lambda: reward_scoring_execute.delay(scoring_id))
    return scoring


def _completion_chunks(job_id: int, size: int) -> Iterator[list[tuple[int, Any, str]]]:
    rows = (
        Completion.objects.filter(job_id=job_id)
        .order_by("prompt__position", "prompt_id", "sample_index", "id")
        .values_list("pk", "prompt__text", "prompt__messages", "text")
    )
    chunk: list[tuple[int, Any, str]] = []
    for pk, prompt_text, messages, text in rows.iterator(chunk_size=2000):
        chunk.append((pk, datasets.prompt_input(prompt_text, messages), text))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def reward_scoring_execute(
    *, scoring_id: int, heartbeat_interval: float = 5.0, chunk_size: int = SCORING_CHUNK
) -> str:
    """Score every completion of the job; each chunk's rewards commit with the counter.

    Scoring again replaces a completion's earlier reward from the same run. Returns the
    scoring's status afterwards.
    """
    now = timezone.now()
    claimed = RewardScoring.objects.filter(
        pk=scoring_id, status=RewardScoring.Status.QUEUED
    ).update(status=RewardScoring.Status.RUNNING, heartbeat_at=now, scored=0, error="")
    if not claimed:
        return "skipped"
    scoring = RewardScoring.objects.select_related("reward_run__base_model").get(pk=scoring_id)
    try:
        with Heartbeat(RewardScoring, scoring_id, heartbeat_interval):
            _score(scoring, chunk_size)
    except Exception as exc:
        logger.exception("reward scoring %s failed", scoring_id)
        message = (
            str(exc)
            if isinstance(exc, TrainingError | RunError)
            else (f"{type(exc).__name__}: {exc}")
        )
        RewardScoring.objects.filter(pk=scoring_id, status=RewardScoring.Status.RUNNING).update(
            status=RewardScoring.Status.FAILED, error=message, finished_at=timezone.now()
        )
    return (
        RewardScoring.objects.filter(pk=scoring_id).values_list("status", flat=True).first()
        or "gone"
    )


def _score(scoring: RewardScoring, chunk_size: int) -> None:
    from training.core.scoring import RewardScorer

    run = scoring.reward_run
    if not run.final_dir or not Path(run.final_dir).is_dir():
        raise RunError(f"the reward model of {run.name!r} is gone: {run.final_dir or '(none)'}")
    max_length = int(run.config.get("max_length", 512))
    use_chat_template = run.base_model.use_chat_template
    total = Completion.objects.filter(job_id=scoring.job_id).count()
    RewardScoring.objects.filter(pk=scoring.pk).update(total=total)
    # Loaded once; each chunk's scores then commit with the progress counter.
    scorer = RewardScorer(run.final_dir, max_length=max_length, use_chat_template=use_chat_template)
    for chunk in _completion_chunks(scoring.job_id, chunk_size):
        rewards = scorer.score([(prompt, text) for _, prompt, text in chunk])
        if len(rewards) != len(chunk):
            raise TrainingError("the reward model returned a different number of scores")
        _write_rewards(scoring, [pk for pk, _, _ in chunk], rewards)
    mean = CompletionReward.objects.filter(
        reward_run=run, completion__job_id=scoring.job_id
    ).aggregate(mean=Avg("reward"))["mean"]
    RewardScoring.objects.filter(pk=scoring.pk, status=RewardScoring.Status.RUNNING).update(
        status=RewardScoring.Status.SUCCEEDED, mean_reward=mean, finished_at=timezone.now()
    )


@transaction.atomic
def _write_rewards(
    scoring: RewardScoring, completion_ids: Sequence[int], rewards: Sequence[float]
) -> None:
    CompletionReward.objects.bulk_create(
        [
            CompletionReward(completion_id=pk, reward_run_id=scoring.reward_run_id, reward=reward)
            for pk, reward in zip(completion_ids, rewards, strict=True)
        ],
        update_conflicts=True,
        unique_fields=["completion", "reward_run"],
        update_fields=["reward"],
    )
    updated = RewardScoring.objects.filter(
        pk=scoring.pk, status=RewardScoring.Status.RUNNING
    ).update(scored=F("scored") + len(completion_ids), heartbeat_at=timezone.now())
    if not updated:
        raise RunError("the scoring was stopped")


def reward_scorings_fail_stale(*, stale_after: timedelta | None = None) -> int:
    """Mark running scorings whose worker stopped sending heartbeats as failed."""
    if stale_after is None:
        stale_after = timedelta(seconds=settings.TRAINING_STALE_AFTER_S)
    cutoff = timezone.now() - stale_after
    return RewardScoring.objects.filter(
        status=RewardScoring.Status.RUNNING, heartbeat_at__lt=cutoff
    ).update(
        status=RewardScoring.Status.FAILED,
        finished_at=timezone.now(),
        error=(
            f"The worker stopped sending heartbeats for over {int(stale_after.total_seconds())} s "
            "(it crashed or was killed). Score the job again."
        ),
    )
