"""Training-run services: validation, the lifecycle's guards, the watchdog, registration."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from generation.models import PolicyModel
from tests.generation.factories import PolicyModelFactory
from tests.labeling.factories import finished_job
from tests.training.factories import TrainingRunFactory, labeled_snapshot, tiny_policy
from training import runs, scorings
from training.core.runners import RunResult
from training.models import RewardScoring, TrainingMetric, TrainingRun
from training.runs import RunError


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.PREFLAB_DATA_DIR = tmp_path / "data"
    return settings.PREFLAB_DATA_DIR


@pytest.fixture
def base(db, tmp_path: Path) -> PolicyModel:  # type: ignore[no-untyped-def]
    # Creating a run only checks that the weights' folder exists; nothing is loaded.
    folder = tmp_path / "weights"
    folder.mkdir()
    return tiny_policy(folder)


@pytest.fixture
def snapshot(db):  # type: ignore[no-untyped-def]
    return labeled_snapshot(prompts=3, k=3, name="prefs")


def _reward_run(base: PolicyModel, tmp_path: Path, **kwargs) -> TrainingRun:  # type: ignore[no-untyped-def]
    final = tmp_path / "reward-final"
    final.mkdir(exist_ok=True)
    return TrainingRunFactory(
        kind=TrainingRun.Kind.REWARD,
        base_model=base,
        status=kwargs.pop("status", TrainingRun.Status.SUCCEEDED),
        final_dir=kwargs.pop("final_dir", str(final)),
        **kwargs,
    )


# --- create -----------------------------------------------------------------------------------


def test_it_queues_a_run_with_the_full_validated_config(
    base, snapshot, carol, data_dir, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks() as callbacks:
        run = runs.training_run_create(
            kind="dpo", base_model=base, snapshot=snapshot, config={"beta": 0.2}, user=carol
        )
    assert len(callbacks) == 1  # the worker is told after the commit
    assert run.status == TrainingRun.Status.QUEUED and run.created_by == carol
    assert run.name == "DPO · tiny · prefs"
    assert run.config["beta"] == 0.2 and run.config["learning_rate"] == 1e-5
    assert run.config["label_smoothing"] == 0.0  # every field stored, not just those given
    assert run.artifacts_dir == str(data_dir / "runs" / str(run.pk))


def test_it_picks_a_free_name(base, snapshot) -> None:  # type: ignore[no-untyped-def]
    first = runs.training_run_create(kind="reward", base_model=base, snapshot=snapshot)
    second = runs.training_run_create(kind="reward", base_model=base, snapshot=snapshot)
    assert first.name == "Reward · tiny · prefs" and second.name == "Reward · tiny · prefs (2)"
    with pytest.raises(RunError, match="already exists") as caught:
        runs.training_run_create(kind="sft", base_model=base, snapshot=snapshot, name=first.name)
    assert caught.value.field == "name"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"learning_rate": -1}, "learning_rate"),
        ({"beta": 0}, "beta"),
        ({"batch_size": "four"}, "batch_size"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_it_names_the_config_field_at_fault(base, snapshot, config, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunError) as caught:
        runs.training_run_create(kind="dpo", base_model=base, snapshot=snapshot, config=config)
    assert caught.value.field == field and field in str(caught.value)
    assert not TrainingRun.objects.exists()


def test_it_rejects_an_unknown_kind(base, snapshot) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunError, match="unknown kind") as caught:
        runs.training_run_create(kind="a2c", base_model=base, snapshot=snapshot)
    assert caught.value.field == "kind"


def test_it_refuses_a_model_served_over_http(snapshot) -> None:  # type: ignore[no-untyped-def]
    served = PolicyModelFactory(
        backend=PolicyModel.Backend.OPENAI,
        source="",
        server_url="http://gpu1:8000/v1",
        server_model="llama",
    )
    with pytest.raises(RunError, match="OpenAI-compatible server") as caught:
        runs.training_run_create(kind="sft", base_model=served, snapshot=snapshot)
    assert caught.value.field == "base_model"


def test_it_refuses_a_model_whose_weights_are_gone(snapshot) -> None:  # type: ignore[no-untyped-def]
    gone = PolicyModelFactory(source="/nonexistent/weights")
    with pytest.raises(RunError, match="/nonexistent/weights") as caught:
        runs.training_run_create(kind="sft", base_model=gone, snapshot=snapshot)
    assert caught.value.field == "base_model"


@pytest.mark.parametrize("kind", ["ppo", "grpo"])
def test_it_needs_a_finished_reward_run_for_rl(base, snapshot, tmp_path, kind) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunError, match="needs a finished reward") as caught:
        runs.training_run_create(kind=kind, base_model=base, snapshot=snapshot)
    assert caught.value.field == "reward_run"
    running = _reward_run(base, tmp_path, status=TrainingRun.Status.RUNNING, final_dir="")
    with pytest.raises(RunError, match="has not finished"):
        runs.training_run_create(kind=kind, base_model=base, snapshot=snapshot, reward_run=running)
    dpo = TrainingRunFactory(kind="dpo", status=TrainingRun.Status.SUCCEEDED, final_dir="/x")
    with pytest.raises(RunError, match="not a reward-model run"):
        runs.training_run_create(kind=kind, base_model=base, snapshot=snapshot, reward_run=dpo)

    reward = _reward_run(base, tmp_path)
    run = runs.training_run_create(kind=kind, base_model=base, snapshot=snapshot, reward_run=reward)
    assert run.reward_run == reward
    assert run.config["normalize_rewards"] is True  # the default for new runs
    with pytest.raises(RunError, match="only a PPO or GRPO run") as caught:
        runs.training_run_create(kind="dpo", base_model=base, snapshot=snapshot, reward_run=reward)
    assert caught.value.field == "reward_run"


def test_it_needs_pairs_that_are_not_ties(base) -> None:  # type: ignore[no-untyped-def]
    tied = labeled_snapshot(prompts=2, k=2, mode="pairwise", order="tie", ties="keep")
    for kind in ("reward", "dpo", "sft"):
        with pytest.raises(RunError, match="train split") as caught:
            runs.training_run_create(kind=kind, base_model=base, snapshot=tied)
        assert caught.value.field == "snapshot"
    # PPO only needs the prompts.
    reward = _reward_run(base, Path(base.source).parent)
    runs.training_run_create(kind="ppo", base_model=base, snapshot=tied, reward_run=reward)


def test_it_trains_sft_on_demonstrations_even_without_pairs(base) -> None:  # type: ignore[no-untyped-def]
    tied = labeled_snapshot(
        prompts=2, k=2, mode="pairwise", order="tie", ties="keep", demonstration="Ideal."
    )
    run = runs.training_run_create(kind="sft", base_model=base, snapshot=tied)
    assert run.status == TrainingRun.Status.QUEUED


# --- cancel, resume, watchdog -------------------------------------------------------------------


def test_it_cancels_a_queued_run_at_once_and_a_running_one_by_flag(db) -> None:  # type: ignore[no-untyped-def]
    queued = runs.run_lifecycle.cancel(TrainingRunFactory())
    assert queued.status == TrainingRun.Status.CANCELLED and queued.finished_at
    running = runs.run_lifecycle.cancel(TrainingRunFactory(status=TrainingRun.Status.RUNNING))
    assert running.status == TrainingRun.Status.RUNNING and running.cancel_requested
    for status in TrainingRun.FINISHED:
        with pytest.raises(RunError, match=f"a {status} run cannot be cancelled"):
            runs.run_lifecycle.cancel(TrainingRunFactory(status=status))


def test_it_resumes_a_failed_run_from_its_latest_checkpoint(
    base, tmp_path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    artifacts = tmp_path / "run"
    for step in (2, 10, 4, 12):
        (artifacts / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
    for step in (2, 10, 4):  # complete; 12 is what a worker killed mid-save leaves
        (artifacts / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    run = TrainingRunFactory(
        base_model=base,
        status=TrainingRun.Status.FAILED,
        error="boom",
        artifacts_dir=str(artifacts),
        finished_at=timezone.now(),
    )
    with django_capture_on_commit_callbacks() as callbacks:
        resumed = runs.run_lifecycle.resume(run)
    assert len(callbacks) == 1
    assert resumed.status == TrainingRun.Status.QUEUED
    assert resumed.error == "" and resumed.finished_at is None
    assert resumed.checkpoint_dir == str(artifacts / "checkpoints" / "checkpoint-10")


def test_it_resumes_only_failed_or_cancelled_runs(base) -> None:  # type: ignore[no-untyped-def]
    cancelled = TrainingRunFactory(base_model=base, status=TrainingRun.Status.CANCELLED)
    assert runs.run_lifecycle.resume(cancelled).status == TrainingRun.Status.QUEUED
    for status in (
        TrainingRun.Status.QUEUED,
        TrainingRun.Status.RUNNING,
        TrainingRun.Status.SUCCEEDED,
    ):
        with pytest.raises(RunError, match=f"a {status} run cannot be resumed"):
            runs.run_lifecycle.resume(TrainingRunFactory(base_model=base, status=status))


def test_it_cannot_resume_a_run_whose_base_model_is_gone(db) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(
        base_model=PolicyModelFactory(source="/nonexistent/weights"),
        status=TrainingRun.Status.FAILED,
    )
    with pytest.raises(RunError, match="are gone"):
        runs.run_lifecycle.resume(run)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED


def test_it_fails_only_running_runs_whose_heartbeat_is_stale(db) -> None:  # type: ignore[no-untyped-def]
    old = timezone.now() - timedelta(minutes=10)
    stale = TrainingRunFactory(status=TrainingRun.Status.RUNNING, heartbeat_at=old)
    fresh = TrainingRunFactory(status=TrainingRun.Status.RUNNING, heartbeat_at=timezone.now())
    queued = TrainingRunFactory(heartbeat_at=old)
    done = TrainingRunFactory(status=TrainingRun.Status.SUCCEEDED, heartbeat_at=old)

    assert runs.run_lifecycle.fail_stale(stale_after=timedelta(minutes=5)) == 1
    stale.refresh_from_db()
    assert stale.status == TrainingRun.Status.FAILED and stale.finished_at
    assert "stopped sending heartbeats" in stale.error and "last checkpoint" in stale.error
    for run, status in ((fresh, "running"), (queued, "queued"), (done, "succeeded")):
        run.refresh_from_db()
        assert run.status == status


def test_the_watchdog_uses_the_configured_staleness(db, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRAINING_STALE_AFTER_S = 60
    TrainingRunFactory(
        status=TrainingRun.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=30)
    )
    assert runs.run_lifecycle.fail_stale() == 0
    settings.TRAINING_STALE_AFTER_S = 10
    assert runs.run_lifecycle.fail_stale() == 1


# --- executing (without training: claims, failures, registration) --------------------------------


def test_it_claims_a_run_only_once(db) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(status=TrainingRun.Status.RUNNING)
    assert runs.training_run_execute(run_id=run.pk) == "skipped"
    run.refresh_from_db()
    assert run.attempts == 0


def test_it_fails_a_run_with_a_config_error_as_is(base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(
        base_model=base, config={"learning_rate": -1}, artifacts_dir=str(tmp_path / "run")
    )
    assert runs.training_run_execute(run_id=run.pk, heartbeat_interval=0.1) == "failed"
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.attempts == 1
    assert run.error == "learning_rate: must be > 0"
    assert "Traceback" not in run.log_tail


def test_it_fails_a_run_on_a_bug_with_the_exception_and_its_traceback(base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = TrainingRunFactory(base_model=base, artifacts_dir=str(blocker / "run"))
    assert runs.training_run_execute(run_id=run.pk, heartbeat_interval=0.1) == "failed"
    run.refresh_from_db()
    assert run.error.startswith(("FileExistsError: ", "NotADirectoryError: "))
    assert "Traceback (most recent call last)" in run.log_tail


def _result(final: Path) -> RunResult:
    final.mkdir(parents=True)
    return RunResult(
        status="succeeded",
        steps=3,
        final_dir=final,
        checkpoint_dir=final.parent / "checkpoints" / "checkpoint-3",
        eval_metrics={"eval/loss": 0.5, "eval/kl": float("nan")},
    )


def test_it_registers_a_trained_policy_with_the_run_succeeding(base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base.use_chat_template = True
    base.save()
    PolicyModelFactory(name="my dpo")  # the run's name is taken by another model
    run = TrainingRunFactory(
        name="my dpo", kind="dpo", base_model=base, status=TrainingRun.Status.RUNNING
    )
    runs._register(run, _result(tmp_path / "run" / "final"))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED and run.step == 3 and run.finished_at
    assert run.eval_metrics == {"eval/loss": 0.5, "eval/kl": None}
    model = run.output_model
    assert model is not None and model.name == "my dpo (2)"
    assert model.source == str(tmp_path / "run" / "final") == run.final_dir
    assert model.backend == base.backend and model.use_chat_template and model.parent == base
    assert "my dpo" in model.description and run.snapshot.content_hash in model.description


def test_it_keeps_a_reward_model_as_a_folder(base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(kind="reward", base_model=base, status=TrainingRun.Status.RUNNING)
    models_before = PolicyModel.objects.count()
    runs._register(run, _result(tmp_path / "final"))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED and run.final_dir == str(tmp_path / "final")
    assert run.output_model is None and PolicyModel.objects.count() == models_before


def test_it_registers_nothing_for_a_run_the_watchdog_failed(base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(kind="sft", base_model=base, status=TrainingRun.Status.FAILED)
    models_before = PolicyModel.objects.count()
    runs._register(run, _result(tmp_path / "final"))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.output_model is None
    assert PolicyModel.objects.count() == models_before


def test_a_new_run_never_reuses_anothers_artifacts(base, snapshot, data_dir) -> None:  # type: ignore[no-untyped-def]
    # Left behind by a database that was reset: the next run with that id must not resume it.
    first = runs.training_run_create(kind="dpo", base_model=base, snapshot=snapshot)
    next_pk = first.pk + 1  # ids come from a counter (a sequence on PostgreSQL)
    (data_dir / "runs" / str(next_pk) / "checkpoints" / "checkpoint-9").mkdir(parents=True)
    run = runs.training_run_create(kind="dpo", base_model=base, snapshot=snapshot)
    assert run.pk == next_pk
    assert first.artifacts_dir == str(data_dir / "runs" / str(first.pk))
    assert run.artifacts_dir == str(data_dir / "runs" / f"{run.pk}-2")


def test_it_forgets_points_past_the_checkpoint_it_resumes_from(base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    artifacts = tmp_path / "run"
    (artifacts / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (artifacts / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    # A config error stops the attempt right after the claim and the clean-up.
    run = TrainingRunFactory(
        base_model=base, artifacts_dir=str(artifacts), config={"learning_rate": -1}
    )
    for step in (1, 2, 3, 4):
        TrainingMetric.objects.create(run=run, step=step, values={"loss": 1.0})
    runs.training_run_execute(run_id=run.pk, heartbeat_interval=0.1)
    assert list(TrainingMetric.objects.filter(run=run).values_list("step", flat=True)) == [1, 2]


# --- reward scoring ---------------------------------------------------------------------------


def test_it_queues_a_scoring_of_a_finished_job(base, tmp_path, dave) -> None:  # type: ignore[no-untyped-def]
    reward = _reward_run(base, tmp_path)
    job = finished_job(prompts=2, k=3)
    scoring = scorings.reward_scoring_create(reward_run=reward, job=job, user=dave)
    assert scoring.status == RewardScoring.Status.QUEUED and scoring.total == 6
    with pytest.raises(RunError, match="already scoring"):
        scorings.reward_scoring_create(reward_run=reward, job=job)


def test_it_scores_only_with_a_finished_reward_run_and_a_finished_job(base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    job = finished_job(prompts=1, k=2)
    dpo = TrainingRunFactory(kind="dpo", status=TrainingRun.Status.SUCCEEDED, final_dir="/x")
    with pytest.raises(RunError, match="not a reward-model run") as caught:
        scorings.reward_scoring_create(reward_run=dpo, job=job)
    assert caught.value.field == "reward_run"
    failed = _reward_run(base, tmp_path, status=TrainingRun.Status.FAILED, final_dir="")
    with pytest.raises(RunError, match="has not finished"):
        scorings.reward_scoring_create(reward_run=failed, job=job)
    reward = _reward_run(base, tmp_path)
    job.status = "running"
    job.save()
    with pytest.raises(RunError, match="has not finished") as caught:
        scorings.reward_scoring_create(reward_run=reward, job=job)
    assert caught.value.field == "job"


def test_it_skips_half_written_checkpoints(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from training.core.runners import latest_checkpoint

    root = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path) is None
    (root / "checkpoint-3").mkdir(parents=True)
    (root / "checkpoint-3" / "ppo_state.json").write_text("{}")
    (root / "checkpoint-7").mkdir()  # weights written, state file not yet
    (root / "checkpoint-7" / "model.safetensors").write_bytes(b"")
    (root / ".checkpoint-9.tmp").mkdir()

    assert latest_checkpoint(tmp_path) == root / "checkpoint-3"


def test_it_needs_a_ranking_that_orders_two_completions_for_the_listwise_loss(base) -> None:  # type: ignore[no-untyped-def]
    tied = labeled_snapshot(prompts=2, k=2, mode="pairwise", order="tie", ties="keep")
    listwise = {"loss": "plackett_luce"}
    for kind in ("reward", "dpo"):
        with pytest.raises(RunError, match="whole rankings") as caught:
            runs.training_run_create(kind=kind, base_model=base, snapshot=tied, config=listwise)
        assert caught.value.field == "snapshot"


def test_it_trains_a_listwise_reward_model_on_the_snapshots_rankings(
    db, tiny_model_path, settings
) -> None:  # type: ignore[no-untyped-def]
    ranked = labeled_snapshot(prompts=4, k=3, eval_fraction=0.5, seed=1)
    run = runs.training_run_create(
        kind="reward",
        base_model=tiny_policy(tiny_model_path),
        snapshot=ranked,
        config={"loss": "plackett_luce", "max_steps": 2, "max_length": 64, "batch_size": 2},
    )

    assert runs.training_run_execute(run_id=run.pk, heartbeat_interval=60) == "succeeded"

    run.refresh_from_db()
    assert "rankings" in run.log_tail
    assert "eval/rewards/top1_accuracies" in run.eval_metrics


def test_it_trains_kto_on_the_snapshots_answers_and_registers_the_policy(
    db, tiny_model_path, settings
) -> None:  # type: ignore[no-untyped-def]
    ranked = labeled_snapshot(prompts=3, k=2, mode="pairwise", eval_fraction=0.3, seed=2)
    run = runs.training_run_create(
        kind="kto",
        base_model=tiny_policy(tiny_model_path),
        snapshot=ranked,
        config={"max_steps": 2, "max_length": 64, "batch_size": 2},
    )
    assert run.name.startswith("KTO · ")

    assert runs.training_run_execute(run_id=run.pk, heartbeat_interval=60) == "succeeded"

    run.refresh_from_db()
    assert run.output_model is not None and run.output_model.parent_id == run.base_model_id
    assert TrainingMetric.objects.filter(run=run).exists()


def test_it_needs_pairs_for_kto(base) -> None:  # type: ignore[no-untyped-def]
    tied = labeled_snapshot(prompts=2, k=2, mode="pairwise", order="tie", ties="keep")
    with pytest.raises(RunError, match="train split") as caught:
        runs.training_run_create(kind="kto", base_model=base, snapshot=tied)
    assert caught.value.field == "snapshot"


def test_it_refuses_a_reward_base_no_reward_model_can_be_built_on(db, tmp_path, snapshot) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoConfig

    folder = tmp_path / "t5"
    AutoConfig.for_model("t5").save_pretrained(folder)
    t5 = tiny_policy(folder, name="t5")

    with pytest.raises(RunError, match="encoder-decoder") as caught:
        runs.training_run_create(kind="reward", base_model=t5, snapshot=snapshot)

    assert caught.value.field == "base_model"
    runs.training_run_create(kind="sft", base_model=t5, snapshot=snapshot)  # not a reward run


def test_it_refuses_a_reward_models_encoder_as_the_base_of_a_policy_run(
    db, tmp_path, snapshot
) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoConfig

    folder = tmp_path / "bert"
    AutoConfig.for_model("bert").save_pretrained(folder)
    bert = tiny_policy(folder, name="bert")

    for kind in ("dpo", "sft"):
        with pytest.raises(RunError, match="is an encoder") as caught:
            runs.training_run_create(kind=kind, base_model=bert, snapshot=snapshot)
        assert caught.value.field == "base_model"
    runs.training_run_create(kind="reward", base_model=bert, snapshot=snapshot)


def test_it_needs_scored_answers_for_score_regression(base, snapshot) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunError, match="no scored answer") as caught:
        runs.training_run_create(
            kind="reward", base_model=base, snapshot=snapshot, config={"loss": "score_regression"}
        )
    assert caught.value.field == "snapshot"
