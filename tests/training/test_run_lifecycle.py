"""Training runs end to end through a real Celery worker, on the tiny offline model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from generation.backends import SamplingParams, backend_for
from generation.models import PolicyModel
from generation.services import policy_model_backend_spec
from labeling.models import DatasetSnapshot
from tests.conftest import wait_for
from tests.labeling.factories import finished_job
from tests.training.factories import labeled_snapshot, tiny_policy
from training import runs, scorings
from training.core.runners import latest_checkpoint
from training.models import CompletionReward, RewardScoring, TrainingMetric, TrainingRun

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

FEW_STEPS = {"max_steps": 2, "logging_steps": 1, "max_length": 64, "batch_size": 2}
PPO_STEPS = {
    **FEW_STEPS,
    "rollout_batch_prompts": 2,
    "minibatch_size": 2,
    "ppo_epochs": 1,
    "max_new_tokens": 8,
}
# Long enough to be caught running, short enough to finish after a resume: with progress
# written and the cancel flag read every PROGRESS_MS, a cancel lands within a few steps.
MANY_STEPS = {"max_steps": 200, "logging_steps": 1, "max_length": 32, "batch_size": 1}
PROGRESS_MS = 100


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.PREFLAB_DATA_DIR = tmp_path / "data"
    settings.TRAINING_PROGRESS_MS = PROGRESS_MS
    return settings.PREFLAB_DATA_DIR


@pytest.fixture
def base(tiny_model_path: Path, transactional_db: None) -> PolicyModel:
    return tiny_policy(tiny_model_path)


@pytest.fixture
def snapshot(transactional_db: None) -> DatasetSnapshot:
    return labeled_snapshot(prompts=4, k=3, eval_fraction=0.3, seed=1, name="prefs")


def _run(run_id: int) -> TrainingRun:
    return TrainingRun.objects.select_related("output_model").get(pk=run_id)


def _finished(run: TrainingRun, timeout: float = 300) -> TrainingRun:
    return wait_for(  # type: ignore[no-any-return]
        lambda: _run(run.pk).status in TrainingRun.FINISHED and _run(run.pk), timeout, 0.2
    )


def _weights(folder: str | Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    assert tensors, f"no safetensors in {folder}"
    return tensors


def _changed_from_base(final_dir: str, base_dir: Path) -> bool:
    """Some weight the trained model shares with the base differs from it."""
    import torch

    trained, original = _weights(final_dir), _weights(base_dir)
    shared = [k for k in trained if k in original and trained[k].shape == original[k].shape]
    assert shared, "the trained model shares no weights with its base"
    return any(not torch.allclose(trained[k].float(), original[k].float()) for k in shared)


def _assert_trained(run: TrainingRun, base_dir: Path) -> None:
    assert run.status == TrainingRun.Status.SUCCEEDED, f"{run.error}\n{run.log_tail}"
    assert run.step == run.total_steps == run.config["max_steps"]
    # One point per logged step (the last step also carries the held-out metrics).
    steps = TrainingMetric.objects.filter(run=run).values_list("step", flat=True)
    assert sorted(set(steps)) == list(range(1, run.step + 1))
    assert "loss" in run.metrics or any(name.startswith("loss") for name in run.metrics)
    assert Path(run.final_dir).is_dir()
    assert _changed_from_base(run.final_dir, base_dir)


def _assert_samples(model: PolicyModel) -> None:
    backend = backend_for(
        policy_model_backend_spec(model),
        reuse=False,
    )
    try:
        (samples,) = backend.generate(
            ["Prompt 0: once upon a"], 2, SamplingParams(max_new_tokens=4, seed=0)
        )
    finally:
        backend.close()
    assert len(samples) == 2 and all(s.completion_tokens for s in samples)


def test_it_trains_a_reward_model_scores_a_job_with_it_and_runs_ppo_on_it(
    celery_worker, base, snapshot, tiny_model_path
) -> None:  # type: ignore[no-untyped-def]
    reward = runs.training_run_create(
        kind="reward", base_model=base, snapshot=snapshot, config=FEW_STEPS
    )
    reward = _finished(reward)
    _assert_trained(reward, tiny_model_path)
    assert reward.output_model is None  # a reward model is not a policy
    assert reward.final_dir == str(Path(reward.artifacts_dir) / "final")
    # Its scores on the snapshot's chosen answers, which PPO normalises by.
    assert reward.reward_stats["reference"] == "chosen" and reward.reward_stats["count"] > 0
    assert reward.reward_stats["std"] > 0

    job = finished_job(prompts=3, k=2)
    scoring = scorings.reward_scoring_create(reward_run=reward, job=job)
    scoring = wait_for(
        lambda: (
            (s := RewardScoring.objects.get(pk=scoring.pk)).status in ("succeeded", "failed") and s
        ),
        180,
        0.2,
    )
    assert scoring.status == "succeeded", scoring.error
    assert scoring.scored == scoring.total == 6
    rewards = CompletionReward.objects.filter(reward_run=reward, completion__job=job)
    assert rewards.count() == 6
    assert scoring.mean_reward == pytest.approx(
        sum(r.reward for r in rewards) / 6, rel=1e-6, abs=1e-6
    )

    ppo = runs.training_run_create(
        kind="ppo", base_model=base, snapshot=snapshot, reward_run=reward, config=PPO_STEPS
    )
    ppo = _finished(ppo)
    _assert_trained(ppo, tiny_model_path)
    assert ppo.output_model is not None and ppo.output_model.parent == base
    assert ppo.config["normalize_rewards"] is True
    stats = reward.reward_stats
    assert f"(score - {stats['mean']:.4g}) / {stats['std']:.4g}" in ppo.log_tail
    _assert_samples(ppo.output_model)


def test_it_runs_grpo_on_a_reward_run_that_predates_score_stats(
    celery_worker, base, snapshot, tiny_model_path
) -> None:  # type: ignore[no-untyped-def]
    reward = _finished(
        runs.training_run_create(
            kind="reward", base_model=base, snapshot=snapshot, config=FEW_STEPS
        )
    )
    assert reward.status == TrainingRun.Status.SUCCEEDED, reward.error
    # A reward run from before runs stored their stats.
    TrainingRun.objects.filter(pk=reward.pk).update(reward_stats={})

    grpo = runs.training_run_create(
        kind="grpo",
        base_model=base,
        snapshot=snapshot,
        reward_run=reward,
        config={**PPO_STEPS, "rollout_k": 2, "minibatch_size": 4},
    )
    grpo = _finished(grpo)

    _assert_trained(grpo, tiny_model_path)
    assert "has no score statistics yet" in grpo.log_tail
    reward.refresh_from_db()
    assert reward.reward_stats["count"] > 0  # computed once, kept for the next run
    assert "reward/group_std" in grpo.metrics and "loss/value" not in grpo.metrics
    assert grpo.output_model is not None and grpo.output_model.parent == base
    assert grpo.output_model.name == grpo.name and grpo.name.startswith("GRPO")
    _assert_samples(grpo.output_model)


@pytest.mark.parametrize("kind", ["dpo", "sft"])
def test_it_trains_a_policy_and_registers_it_for_generation(
    celery_worker, base, snapshot, tiny_model_path, kind
) -> None:  # type: ignore[no-untyped-def]
    run = runs.training_run_create(kind=kind, base_model=base, snapshot=snapshot, config=FEW_STEPS)
    run = _finished(run)
    _assert_trained(run, tiny_model_path)
    model = run.output_model
    assert model is not None and model.name == run.name and model.parent == base
    assert model.source == run.final_dir and model.backend == base.backend
    assert snapshot.content_hash in model.description
    _assert_samples(model)


def test_it_cancels_a_running_run_with_a_checkpoint_and_resumes_it(
    celery_worker, base, snapshot
) -> None:  # type: ignore[no-untyped-def]
    run = runs.training_run_create(
        kind="sft", base_model=base, snapshot=snapshot, config=MANY_STEPS
    )
    wait_for(lambda: _run(run.pk).step >= 1, 180, 0.05)
    runs.run_lifecycle.cancel(_run(run.pk))
    cancelled = _finished(run, 120)
    assert cancelled.status == TrainingRun.Status.CANCELLED, cancelled.error
    assert 0 < cancelled.step < MANY_STEPS["max_steps"]
    assert Path(cancelled.checkpoint_dir).is_dir()
    assert cancelled.checkpoint_dir.endswith(f"checkpoint-{cancelled.step}")
    assert cancelled.output_model is None and not cancelled.final_dir

    runs.run_lifecycle.resume(cancelled)
    done = _finished(run, 300)
    assert done.status == TrainingRun.Status.SUCCEEDED, f"{done.error}\n{done.log_tail}"
    assert done.attempts == 2
    assert done.step == done.total_steps == MANY_STEPS["max_steps"]
    # Every step's training metrics reported once: the resumed attempt went on from the
    # checkpoint (the first attempt's points past it were dropped).
    points = TrainingMetric.objects.filter(run=run).values_list("step", "values")
    steps = [step for step, values in points if "loss" in values]
    assert steps == list(range(1, done.step + 1))
    assert done.output_model is not None


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_a_killed_worker_leaves_a_failed_run_and_no_model_then_it_resumes(
    base, snapshot, data_dir, request
) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the worker mid-run: the run stays running until the watchdog fails it,
    with the heartbeat reason, no model was registered for it, and a resumed attempt goes
    on from the last checkpoint."""
    models_before = set(PolicyModel.objects.values_list("pk", flat=True))
    run = runs.training_run_create(
        kind="sft", base_model=base, snapshot=snapshot, config={**MANY_STEPS, "save_steps": 20}
    )
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PREFLAB_VAR_DIR": str(settings.VAR_DIR),
        "PREFLAB_DATA_DIR": str(data_dir),
        "TRAINING_PROGRESS_MS": str(PROGRESS_MS),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--queues",
            "training",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=settings.BASE_DIR,
    )
    try:
        checkpoint = wait_for(lambda: latest_checkpoint(Path(run.artifacts_dir)), 180, 0.05)
        wait_for(lambda: _run(run.pk).step > int(checkpoint.name.split("-")[1]), 60, 0.05)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

    stuck = _run(run.pk)
    assert stuck.status == TrainingRun.Status.RUNNING  # nobody told the database
    assert stuck.step < MANY_STEPS["max_steps"]
    assert runs.run_lifecycle.fail_stale(stale_after=timedelta(seconds=0)) == 1
    failed = _run(run.pk)
    assert failed.status == TrainingRun.Status.FAILED
    assert "heartbeat" in failed.error and "checkpoint" in failed.error
    assert failed.output_model is None and not failed.final_dir
    assert set(PolicyModel.objects.values_list("pk", flat=True)) == models_before

    request.getfixturevalue("celery_worker")
    resumed = runs.run_lifecycle.resume(failed)
    assert resumed.checkpoint_dir and Path(resumed.checkpoint_dir).is_dir()
    done = _finished(run, 300)
    assert done.status == TrainingRun.Status.SUCCEEDED, f"{done.error}\n{done.log_tail}"
    assert done.attempts == 2 and done.step == MANY_STEPS["max_steps"]
    assert f"resuming from {Path(resumed.checkpoint_dir).name}" in done.log_tail
    assert done.output_model is not None
