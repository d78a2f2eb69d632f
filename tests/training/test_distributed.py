"""Multi-process runs from the Django side (``training.distributed``): what the API and the
form accept, and 2-process runs through the worker, cancelled, resumed and failed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import wait_for
from tests.training.factories import labeled_snapshot, tiny_policy
from tests.training.test_api_rl import _reward_run
from tests.training.test_views_runs import launch_data
from training import runs
from training.models import TrainingMetric, TrainingRun

RUNS = "/api/training/runs/"


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.PREFLAB_DATA_DIR = tmp_path / "data"
    return settings.PREFLAB_DATA_DIR


@pytest.fixture
def base(tiny_model_path: Path, db):  # type: ignore[no-untyped-def]
    return tiny_policy(tiny_model_path)


@pytest.fixture
def snapshot(db):  # type: ignore[no-untyped-def]
    return labeled_snapshot(prompts=4, k=3, eval_fraction=0.3, seed=1, name="prefs")


def _create(user, base, snapshot, kind: str = "dpo", reward_run=None, **config):  # type: ignore[no-untyped-def]
    api = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    body = {"kind": kind, "base_model": base.pk, "snapshot": snapshot.pk, "config": config}
    if reward_run is not None:
        body["reward_run"] = reward_run
    return api.post(RUNS, body, format="json")


# --- what a run may ask for --------------------------------------------------------------


def test_it_creates_a_two_process_run(carol, base, snapshot) -> None:  # type: ignore[no-untyped-def]
    response = _create(carol, base, snapshot, num_processes=2, batch_size=4)
    assert response.status_code == 201, response.content
    run = TrainingRun.objects.get()
    assert run.config["num_processes"] == 2 and run.config["parallelism"] == "ddp"


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"num_processes": 0}, "num_processes", "must be >= 1"),
        ({"num_processes": 65}, "num_processes", "at most 64"),
        ({"num_processes": 2, "batch_size": 3}, "batch_size", "multiple of the number"),
        ({"num_processes": 2, "parallelism": "megatron"}, "parallelism", "must be one of"),
        ({"parallelism_config": "/x.json"}, "parallelism_config", "only with fsdp"),
        (
            {"parallelism": "fsdp", "parallelism_config": "/no/such/fsdp.json"},
            "parallelism_config",
            "cannot read /no/such/fsdp.json",
        ),
        ({"parallelism": "fsdp", "use_lora": True}, "use_lora", "not supported with fsdp"),
        ({"num_nodes": 2, "batch_size": 4}, "num_nodes", "PREFLAB_TRAINING_RDZV_ENDPOINT"),
    ],
)
def test_it_refuses_a_parallelism_it_cannot_run(
    carol, base, snapshot, config, field, message
) -> None:  # type: ignore[no-untyped-def]
    response = _create(carol, base, snapshot, **config)
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])
    assert not TrainingRun.objects.exists()


def test_it_refuses_deepspeed_where_the_workers_have_no_cuda(
    carol, base, snapshot, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.TRAINING_CUDA = "0"
    response = _create(carol, base, snapshot, num_processes=2, parallelism="deepspeed_zero3")
    assert response.status_code == 400
    assert "DeepSpeed needs CUDA" in str(response.json()["parallelism"])

    settings.TRAINING_CUDA = "1"  # GPU workers on other machines, said so in the settings
    response = _create(carol, base, snapshot, num_processes=2, parallelism="deepspeed_zero3")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("kind", ["ppo", "grpo"])
def test_it_creates_an_rl_run_in_processes_that_share_its_rollouts(  # type: ignore[no-untyped-def]
    carol, base, snapshot, tmp_path, kind
) -> None:
    reward = _reward_run(tmp_path)
    shared = {"num_processes": 2, "batch_size": 2, "minibatch_size": 4}

    created = _create(carol, base, snapshot, kind, reward_run=reward.pk, **shared)

    assert created.status_code == 201, created.content
    assert TrainingRun.objects.get(kind=kind).config["num_processes"] == 2
    refused = [
        _create(carol, base, snapshot, kind, reward_run=reward.pk, **shared, **bad)
        for bad in ({"rollout_batch_prompts": 3}, {"rollout_backend": "vllm"})
    ]
    assert [r.status_code for r in refused] == [400, 400]
    assert "multiple of the number of processes (2)" in str(
        refused[0].json()["rollout_batch_prompts"]
    )
    assert "vllm samples in one process" in str(refused[1].json()["rollout_backend"])


def test_it_launches_a_two_process_run_from_the_form(  # type: ignore[no-untyped-def]
    client: Client, carol, base, snapshot, django_capture_on_commit_callbacks
) -> None:
    client.force_login(carol)
    page = client.get("/training/runs/new/?kind=dpo").content.decode()
    assert 'name="num_processes"' in page and 'name="parallelism"' in page
    data = launch_data(base, snapshot, num_processes=2, batch_size=4, parallelism="fsdp")
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/training/runs/new/", data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert run.config["num_processes"] == 2 and run.config["parallelism"] == "fsdp"


# --- 2-process runs through the worker ---------------------------------------------------

# Long enough to be caught running, short enough to finish after a resume.
MANY_STEPS = {"max_steps": 30, "logging_steps": 1, "max_length": 32, "batch_size": 2}


def _run(run_id: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=run_id)


def _finished(run: TrainingRun, timeout: float) -> TrainingRun:
    return wait_for(  # type: ignore[no-any-return]
        lambda: _run(run.pk).status in TrainingRun.FINISHED and _run(run.pk), timeout, 0.2
    )


@pytest.mark.slow
@pytest.mark.celery_worker
def test_it_cancels_a_two_process_run_at_a_checkpoint_and_resumes_it(  # type: ignore[no-untyped-def]
    celery_worker, base, snapshot
) -> None:
    run = runs.training_run_create(
        kind="dpo", base_model=base, snapshot=snapshot, config={**MANY_STEPS, "num_processes": 2}
    )
    # Cancelled as soon as a worker has it: the group stops after its first steps.
    wait_for(lambda: _run(run.pk).status == TrainingRun.Status.RUNNING, 120, 0.02)
    runs.run_lifecycle.cancel(_run(run.pk))
    cancelled = _finished(run, 120)
    assert cancelled.status == TrainingRun.Status.CANCELLED, (
        f"{cancelled.error}\n{cancelled.log_tail}"
    )
    assert 0 < cancelled.step < MANY_STEPS["max_steps"]
    assert cancelled.checkpoint_dir.endswith(f"checkpoint-{cancelled.step}")
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {
        p.name for p in Path(cancelled.checkpoint_dir).iterdir()
    }
    assert "launching 2 processes" in cancelled.log_tail

    runs.run_lifecycle.resume(cancelled)
    done = _finished(run, 300)
    assert done.status == TrainingRun.Status.SUCCEEDED, f"{done.error}\n{done.log_tail}"
    assert done.attempts == 2 and done.step == MANY_STEPS["max_steps"]
    assert f"resuming from checkpoint-{cancelled.step}" in done.log_tail
    # Rank 0's reports reached the run: every step's metrics once, across both attempts.
    points = TrainingMetric.objects.filter(run=run).values_list("step", "values")
    assert [step for step, values in points if "loss" in values] == list(range(1, done.step + 1))
    assert done.output_model is not None and Path(done.final_dir).is_dir()


_FAILING_RANK = """
import os

if os.environ.get("RANK") == "1":
    from training.core import hf

    def refuse(*args, **kwargs):
        raise RuntimeError("rank 1 cannot load anything")

    hf.load_causal_lm = refuse
"""


@pytest.mark.slow
def test_it_fails_a_run_with_the_error_of_the_rank_that_raised(  # type: ignore[no-untyped-def]
    base, snapshot, tmp_path, monkeypatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_FAILING_RANK))
    monkeypatch.setenv("PYTHONPATH", str(site))  # imported by every rank at start-up
    run = runs.training_run_create(
        kind="dpo", base_model=base, snapshot=snapshot, config={**MANY_STEPS, "num_processes": 2}
    )

    assert runs.training_run_execute(run_id=run.pk) == "failed"

    failed = _run(run.pk)
    assert failed.error == "rank 1 failed: RuntimeError: rank 1 cannot load anything"
    assert "[rank 1] RuntimeError: rank 1 cannot load anything" in failed.log_tail
    assert "[rank 1] Traceback (most recent call last):" in failed.log_tail
    assert failed.output_model is None and not failed.final_dir
