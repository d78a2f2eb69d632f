"""A reward run's score statistics on its reference answers, which PPO and GRPO normalise by."""

from __future__ import annotations

import importlib
import math
import statistics
from pathlib import Path

import pytest
from django.apps import apps

from tests.training.factories import TrainingRunFactory, labeled_snapshot, tiny_policy
from tests.training.test_runner_ppo import _build_reward_model
from training import datasets, runs
from training.core.scoring import RewardScorer, RewardStats, reward_stats_of
from training.models import TrainingRun


def test_it_takes_the_mean_and_the_population_spread() -> None:
    # mean 3; variance (4 + 1 + 0 + 9) / 4 = 3.5
    stats = reward_stats_of([1.0, 2.0, 3.0, 6.0], reference="chosen")

    assert stats == RewardStats(mean=3.0, std=math.sqrt(3.5), count=4, reference="chosen", max=6.0)
    assert RewardStats.from_dict(stats.to_dict()) == stats
    # Stats stored before the maximum was kept still load.
    old = RewardStats.from_dict({"mean": 1.0, "std": 2.0, "count": 3, "reference": "chosen"})
    assert old.max is None and "max" not in old.to_dict()


def test_it_gives_a_reward_model_without_spread_a_unit_it_can_divide_by() -> None:
    stats = reward_stats_of([2.0, 2.0])

    assert stats.mean == 2.0 and 0 < stats.std <= 1e-6
    with pytest.raises(ValueError, match="no scores"):
        reward_stats_of([])
    with pytest.raises(ValueError, match="finite"):
        reward_stats_of([1.0, float("nan")])


def test_it_takes_the_demonstrations_as_reference_when_there_are_any(db) -> None:  # type: ignore[no-untyped-def]
    with_demos = labeled_snapshot(prompts=2, k=3, demonstration="An ideal answer.")
    plain = labeled_snapshot(prompts=2, k=3)

    reference, items = datasets.snapshot_reference_answers(snapshot=with_demos)
    assert reference == "demonstrations"
    assert [text for _, text in items] == ["An ideal answer.", "An ideal answer."]

    reference, items = datasets.snapshot_reference_answers(snapshot=plain)
    assert reference == "chosen"
    # A ranking of 3 gives pairs (1>2, 1>3, 2>3): two distinct chosen answers per prompt.
    assert len(items) == 4 and len(set(items)) == 4
    assert len(datasets.snapshot_reference_answers(snapshot=plain, limit=3)[1]) == 3


def test_it_stores_a_reward_models_stats_on_its_run_once(
    db, tiny_model_path: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    final = _build_reward_model(tiny_model_path, tmp_path / "final")
    snapshot = labeled_snapshot(prompts=3, k=3)
    run = TrainingRunFactory(
        kind="reward",
        base_model=tiny_policy(tiny_model_path),
        snapshot=snapshot,
        status=TrainingRun.Status.SUCCEEDED,
        final_dir=str(final),
        config={"max_length": 64},
    )

    stats = runs.reward_run_compute_stats(reward_run=run)

    _, items = datasets.snapshot_reference_answers(snapshot=snapshot)
    scorer = RewardScorer(str(final), device="cpu", max_length=64)
    scores = scorer.score(items)
    assert stats["reference"] == "chosen" and stats["count"] == len(items) == 6
    assert stats["mean"] == pytest.approx(statistics.fmean(scores), abs=1e-6)
    assert stats["std"] == pytest.approx(statistics.pstdev(scores), abs=1e-6)
    assert stats["max"] == pytest.approx(max(scores), abs=1e-6)
    run.refresh_from_db()
    assert run.reward_stats == stats
    # Stored stats are facts about a model that does not change: never recomputed.
    TrainingRun.objects.filter(pk=run.pk).update(reward_stats={**stats, "mean": 99.0})
    assert runs.reward_run_compute_stats(reward_run=run)["mean"] == 99.0


def test_it_refuses_stats_of_an_unfinished_reward_run(db) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(kind="reward", status=TrainingRun.Status.RUNNING)

    with pytest.raises(runs.RunError, match="has not finished"):
        runs.reward_run_compute_stats(reward_run=run)


def test_the_migration_keeps_existing_ppo_runs_on_raw_scores(db) -> None:  # type: ignore[no-untyped-def]
    migration = importlib.import_module("training.migrations.0004_reward_stats_grpo")
    old = TrainingRunFactory(kind="ppo", config={"init_kl_coef": 0.05, "max_steps": 3})
    new = TrainingRunFactory(kind="ppo", config={"normalize_rewards": True})
    dpo = TrainingRunFactory(kind="dpo", config={"beta": 0.1})

    migration.ppo_runs_keep_raw_scores(apps, None)

    for run in (old, new, dpo):
        run.refresh_from_db()
    assert old.config == {"init_kl_coef": 0.05, "max_steps": 3, "normalize_rewards": False}
    assert new.config == {"normalize_rewards": True}
    assert dpo.config == {"beta": 0.1}
