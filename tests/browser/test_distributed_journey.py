"""Scale-out from the browser: an admin launches a 2-process DPO run, watches it, cancels it
at a checkpoint, resumes it, and it ends where the same run in one process ends; and a
generation job served by two real worker processes, cancelled and resumed, ends with
exactly k completions per prompt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.db.models import Count

from generation.models import Completion, GenerationJob, GenerationShard
from tests.browser.conftest import login
from tests.conftest import wait_for
from tests.factories import PASSWORD
from tests.generation.factories import prompt_set_with_prompts
from tests.generation.test_shards_workers import _start_worker
from tests.training.factories import labeled_snapshot, tiny_policy
from tests.training.test_launch import LOSS_TOLERANCE
from training import runs
from training.models import TrainingMetric, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.celery_worker]

Status = TrainingRun.Status


def _losses(run: TrainingRun) -> dict[int, float]:
    points = TrainingMetric.objects.filter(run=run).order_by("step", "id")
    return {p.step: p.values["loss"] for p in points if p.values.get("loss") is not None}


def test_it_trains_dpo_in_two_processes_from_the_browser_through_a_cancel_and_a_resume(  # type: ignore[no-untyped-def]
    page, live_server, celery_worker, carol, settings, tiny_model_path: Path, tmp_path: Path
) -> None:
    settings.PREFLAB_DATA_DIR = tmp_path
    base = tiny_policy(tiny_model_path, name="tiny-base")
    # Four prompts of one pair each: every batch of 2 splits into equal halves, one a rank.
    snapshot = labeled_snapshot(prompts=4, k=2, name="Four pairs")
    login(page, live_server, "carol", PASSWORD)

    page.goto(f"{live_server.url}/training/runs/new/?kind=dpo")
    page.wait_for_selector("#kind-fields[data-kind=dpo] [name=beta]")
    page.select_option("select[name=base_model]", label="tiny-base")
    page.select_option("select[name=snapshot]", label="Four pairs")
    page.fill("input[name=name]", "two-process DPO")
    for name, value in {
        "max_steps": "4",
        "logging_steps": "1",
        "max_length": "64",
        "batch_size": "2",
        "learning_rate": "1e-3",
        "beta": "0.5",
        "num_processes": "2",
    }.items():
        page.fill(f"input[name={name}]", value)
    page.get_by_role("button", name="Launch").click()

    page.wait_for_selector("h1:has-text('two-process DPO')")
    assert page.inner_text("#run-processes") == "2 processes (ddp, torchrun)"
    run = TrainingRun.objects.get()
    assert run.config["num_processes"] == 2
    # Cancel while the process group starts: both ranks stop after the same (first) step
    # they reach, and the Trainer saves it.
    wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING).exists(), 60)
    page.reload()
    page.wait_for_selector("#run-status .badge.status-running")
    page.get_by_role("button", name="Cancel").click()
    # htmx polls the status: the page turns to cancelled by itself.
    page.wait_for_selector("#run-status .badge.status-cancelled", timeout=120_000)
    run.refresh_from_db()
    assert 1 <= run.step < 4, "the run ended before the cancel reached it"
    checkpoint = Path(run.checkpoint_dir)
    assert checkpoint.name == f"checkpoint-{run.step}"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}
    log = page.inner_text("#run-log")
    assert log.startswith("launching 2 processes")
    assert f"stopped at step {run.step}; checkpoint saved" in log

    # The resumed run goes on live, curves included (they poll again once it is active).
    with page.expect_request("**/metrics.json?after=*", timeout=30_000):
        page.get_by_role("button", name="Resume").click()
    page.wait_for_selector("#run-status .badge.status-succeeded", timeout=120_000)
    assert "4</strong> / 4" in page.inner_html("#run-steps")
    assert "attempt 2" in page.inner_text("#run-status")
    run.refresh_from_db()

    # The same run in one process, through the service (the worker runs it).
    single = runs.training_run_create(
        kind="dpo",
        base_model=base,
        snapshot=snapshot,
        config={**run.config, "num_processes": 1},
        name="one-process DPO",
    )
    wait_for(lambda: TrainingRun.objects.get(pk=single.pk).status == Status.SUCCEEDED, 120)
    single.refresh_from_db()
    one, two = _losses(single), _losses(run)
    assert list(two) == list(one) == [1, 2, 3, 4]
    for step, loss in one.items():
        assert two[step] == pytest.approx(loss, abs=LOSS_TOLERANCE), step
    assert set(run.metrics) == set(single.metrics)
    for name, value in single.metrics.items():
        assert run.metrics[name] == pytest.approx(value, abs=LOSS_TOLERANCE), name


def test_it_serves_a_job_from_two_workers_through_a_cancel_and_a_resume(  # type: ignore[no-untyped-def]
    page, live_server, carol, tiny_model_path: Path
) -> None:
    tiny_policy(tiny_model_path, name="tiny-gen")
    prompt_set_with_prompts(12, name="A dozen")
    # Two real Celery worker processes on the generation queue (as in test_shards_workers).
    workers = [_start_worker(name) for name in ("first", "second")]
    try:
        login(page, live_server, "carol", PASSWORD)
        page.goto(f"{live_server.url}/generation/jobs/")
        page.select_option("select[name=prompt_set]", label="A dozen")
        page.select_option("select[name=model]", label="tiny-gen")
        for name, value in {
            "k": "2",
            "max_new_tokens": "8",
            "batch_size": "1",
            "batches_per_shard": "2",
        }.items():
            page.fill(f"input[name={name}]", value)
        page.get_by_role("button", name="Launch").click()
        page.wait_for_selector("#job-shards")
        job = GenerationJob.objects.get()
        assert GenerationShard.objects.filter(job=job).count() == 6

        # Both workers take shards, and the page (htmx, every second) names them.
        page.wait_for_selector("#job-workers:has-text('taken by 2 workers')", timeout=120_000)
        names = page.inner_text("#job-workers")
        assert "first@" in names and "second@" in names
        page.get_by_role("button", name="Cancel").click()
        page.wait_for_selector("#job-progress > p .badge.status-cancelled", timeout=60_000)
        job.refresh_from_db()
        assert job.prompts_done < 12, "the job ended before the cancel reached it"

        page.get_by_role("button", name="Resume").click()
        page.wait_for_selector("#job-progress > p .badge.status-succeeded", timeout=180_000)
        assert "12 / 12 prompts" in page.inner_text("#job-progress")
    finally:
        for process in workers:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    rows = Completion.objects.filter(job=job)
    per_prompt = rows.values("prompt").annotate(n=Count("id"))
    assert len(per_prompt) == 12 and {row["n"] for row in per_prompt} == {2}
    assert rows.count() == rows.values("prompt", "sample_index").distinct().count() == 24
