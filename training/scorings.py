"""Reward scorings: a finished reward run scores every completion of a generation job.

A scoring is a background job (:mod:`config.jobs`): claimed by one worker, a heartbeat while
it scores, cancelled between chunks, failed by the watchdog, resumed (it scores the job
again from the first completion: a reward model's scores do not depend on the order).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Avg, F
from django.utils import timezone

from config.jobs.lifecycle import Lifecycle
from generation.models import Completion, GenerationJob
from training import datasets
from training.core.runners import TrainingError
from training.models import CompletionReward, RewardScoring, TrainingRun
from training.runs import RunError, reward_run_check_finished

logger = logging.getLogger(__name__)

SCORING_CHUNK = 256


def _check_not_scoring(
    reward_run: TrainingRun, job: GenerationJob, *, other_than: int | None = None
) -> None:
    active = RewardScoring.objects.filter(
        reward_run=reward_run, job=job, status__in=RewardScoring.ACTIVE
    )
    if other_than is not None:
        active = active.exclude(pk=other_than)
    if active.exists():
        raise RunError(f"{reward_run.name!r} is already scoring job {job}", field="job")


class ScoringLifecycle(Lifecycle[RewardScoring]):
    def check_resume(self, job: RewardScoring) -> None:
        reward_run_check_finished(job.reward_run)
        _check_not_scoring(job.reward_run, job.job, other_than=job.pk)


scoring_lifecycle = ScoringLifecycle(
    RewardScoring,
    errors=(RunError, TrainingError),
    task="training.tasks.reward_scoring_execute",
    related=("reward_run__base_model", "job"),
)


@transaction.atomic
def reward_scoring_create(
    *, reward_run: TrainingRun, job: GenerationJob, user: User | None = None
) -> RewardScoring:
    """Queue scoring every completion of ``job`` with the reward model of ``reward_run``."""
    reward_run_check_finished(reward_run)
    if job.status != GenerationJob.Status.SUCCEEDED:
        raise RunError(f"job {job} has not finished successfully", field="job")
    total = Completion.objects.filter(job=job).count()
    if not total:
        raise RunError(f"job {job} has no completions", field="job")
    _check_not_scoring(reward_run, job)
    scoring = RewardScoring.objects.create(
        reward_run=reward_run, job=job, total=total, created_by=user
    )
    scoring_lifecycle.enqueue(scoring)
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
    return scoring_lifecycle.execute(
        scoring_id,
        lambda scoring: _score(scoring, chunk_size),
        heartbeat_interval=heartbeat_interval,
        claim_fields={"scored": 0},
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
        if scoring_lifecycle.cancel_requested(scoring.pk):
            scoring_lifecycle.finish(scoring.pk, RewardScoring.Status.CANCELLED)
            return
        rewards = scorer.score([(prompt, text) for _, prompt, text in chunk])
        if len(rewards) != len(chunk):
            raise TrainingError("the reward model returned a different number of scores")
        _write_rewards(scoring, [pk for pk, _, _ in chunk], rewards)
    mean = CompletionReward.objects.filter(
        reward_run=run, completion__job_id=scoring.job_id
    ).aggregate(mean=Avg("reward"))["mean"]
    scoring_lifecycle.finish(scoring.pk, RewardScoring.Status.SUCCEEDED, mean_reward=mean)


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
    # A scoring cancelled or failed under us: this chunk's rewards roll back with JobLost.
    scoring_lifecycle.update_running(
        scoring.pk, scored=F("scored") + len(completion_ids), heartbeat_at=timezone.now()
    )
