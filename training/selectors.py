"""Reads for the training app: runs, their curves, and reward-model scores."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from config.roles import user_is_researcher
from generation.models import GenerationJob
from training.models import CompletionReward, RewardScoring, TrainingMetric, TrainingRun

Curves = dict[str, Any]


def training_run_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[TrainingRun]:
    """Every run for researchers and admins; nothing for anyone else (annotators label blind)."""
    if not user_is_researcher(user):
        return TrainingRun.objects.none()
    return TrainingRun.objects.select_related(
        "base_model", "snapshot", "reward_run", "output_model", "created_by"
    )


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _curves(points: Iterable[tuple[int, dict[str, Any]]]) -> Curves:
    """Points (step, values), in step then write order, as aligned series.

    A step reported twice (a resumed attempt redoing it) keeps the later values.
    """
    by_step: dict[int, dict[str, Any]] = {}
    names: dict[str, None] = {}
    for step, values in points:
        by_step.setdefault(step, {}).update(values or {})
        names.update(dict.fromkeys(values or {}))
    steps = sorted(by_step)
    return {
        "steps": steps,
        "metrics": {name: [_finite(by_step[s].get(name)) for s in steps] for name in names},
    }


def training_run_curves(*, run: TrainingRun, after_step: int = -1) -> Curves:
    """``{"steps": [...], "metrics": {name: [value or None per step]}}`` after ``after_step``.

    JSON-safe: a missing, NaN or infinite value is None.
    """
    points = (
        TrainingMetric.objects.filter(run=run, step__gt=after_step)
        .order_by("step", "id")
        .values_list("step", "values")
    )
    return _curves(points)


def training_runs_compare(*, runs: Iterable[TrainingRun]) -> dict[int, Curves]:
    """Each run's curves (as :func:`training_run_curves`), keyed by run id, in one query."""
    ids = [run.pk for run in runs]
    points: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    rows = (
        TrainingMetric.objects.filter(run_id__in=ids)
        .order_by("run_id", "step", "id")
        .values_list("run_id", "step", "values")
    )
    for run_id, step, values in rows:
        points[run_id].append((step, values))
    return {run_id: _curves(points[run_id]) for run_id in ids}


def reward_runs_finished() -> QuerySet[TrainingRun]:
    """Succeeded reward-model runs with a model folder: the choices for PPO and scoring."""
    return (
        TrainingRun.objects.filter(
            kind=TrainingRun.Kind.REWARD, status=TrainingRun.Status.SUCCEEDED
        )
        .exclude(final_dir="")
        .select_related("base_model", "snapshot")
    )


def reward_scoring_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[RewardScoring]:
    if not user_is_researcher(user):
        return RewardScoring.objects.none()
    return RewardScoring.objects.select_related("reward_run", "job")


def completion_rewards_for_job(*, job: GenerationJob) -> dict[int, list[tuple[str, float]]]:
    """Each completion's rewards: ``{completion id: [(run name, reward), ...]}``.

    Admins only: the callers check (annotators must never see scores).
    """
    rewards: dict[int, list[tuple[str, float]]] = defaultdict(list)
    rows = (
        CompletionReward.objects.filter(completion__job=job)
        .order_by("completion_id", "reward_run__name")
        .values_list("completion_id", "reward_run__name", "reward")
    )
    for completion_id, run_name, reward in rows:
        rewards[completion_id].append((run_name, reward))
    return dict(rewards)
