"""Reward scorings become background jobs (``config.jobs``) on an existing database: every
scoring keeps its state, counts, reward and error; the new fields start empty."""

from __future__ import annotations

import pytest

from tests.migrations import migrate_to

pytestmark = pytest.mark.slow

BEFORE = [("training", "0005_queue_assistance")]
AFTER = [("training", "0006_reward_scoring_lifecycle")]


def test_it_keeps_every_scoring_as_it_was(back_to_the_latest_schema) -> None:  # type: ignore[no-untyped-def]
    apps = migrate_to(BEFORE)
    PolicyModel = apps.get_model("generation", "PolicyModel")
    PromptSet = apps.get_model("generation", "PromptSet")
    Job = apps.get_model("generation", "GenerationJob")
    Snapshot = apps.get_model("labeling", "DatasetSnapshot")
    Run = apps.get_model("training", "TrainingRun")
    Scoring = apps.get_model("training", "RewardScoring")
    base = PolicyModel.objects.create(name="tiny", source="/models/tiny")
    run = Run.objects.create(
        name="rm",
        kind="reward",
        base_model=base,
        snapshot=Snapshot.objects.create(name="snap", content_hash="a" * 64),
        status="succeeded",
    )
    job = Job.objects.create(prompt_set=PromptSet.objects.create(name="p"), status="succeeded")
    before = [
        Scoring.objects.create(
            reward_run=run, job=job, status="succeeded", scored=6, total=6, mean_reward=0.25
        ),
        Scoring.objects.create(
            reward_run=run, job=job, status="failed", scored=2, total=6, error="out of memory"
        ),
        Scoring.objects.create(reward_run=run, job=job, status="running", total=6),
    ]

    apps = migrate_to(AFTER)
    Scoring = apps.get_model("training", "RewardScoring")
    after = list(Scoring.objects.order_by("pk"))
    assert [(s.pk, s.status, s.scored, s.total, s.mean_reward, s.error) for s in after] == [
        (s.pk, s.status, s.scored, s.total, s.mean_reward, s.error) for s in before
    ]
    assert {(s.cancel_requested, s.attempts, s.started_at) for s in after} == {(False, 0, None)}
    cancelled = Scoring.objects.create(reward_run_id=run.pk, job_id=job.pk, status="cancelled")
    assert Scoring.objects.get(pk=cancelled.pk).status == "cancelled"
