"""Generation jobs through a real Celery worker on the configured broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count

from generation import services
from generation.models import Completion, GenerationJob, PolicyModel
from tests.conftest import wait_for
from tests.generation.factories import prompt_set_with_prompts
from tests.queries import first_row

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


@pytest.fixture
def tiny_policy(tiny_model_path: Path, transactional_db: None) -> PolicyModel:
    return services.policy_model_create(
        name="tiny", backend=PolicyModel.Backend.TRANSFORMERS, source=str(tiny_model_path)
    )


def _job(job_id: int) -> GenerationJob:
    return GenerationJob.objects.get(pk=job_id)


def _per_prompt_counts(job: GenerationJob) -> set[int]:
    rows = Completion.objects.filter(job=job).values("prompt").annotate(n=Count("id"))
    return {row["n"] for row in rows}


def test_it_fills_a_job_with_k_completions_per_prompt(celery_worker, tiny_policy) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(5)
    job = services.generation_job_create(
        prompt_set=prompt_set, model=tiny_policy, k=4, max_new_tokens=8, batch_size=2
    )
    done = wait_for(lambda: _job(job.pk).status in GenerationJob.FINISHED and _job(job.pk), 120)
    assert done.status == GenerationJob.Status.SUCCEEDED, done.error
    assert done.prompts_done == done.prompts_total == 5
    assert Completion.objects.filter(job=job).count() == 20
    assert _per_prompt_counts(done) == {4}
    assert done.tokens_generated > 0 and done.tokens_per_second
    first = first_row(Completion.objects.filter(job=job))
    assert first.model == tiny_policy and first.params["max_new_tokens"] == 8
    assert first.completion_tokens is not None and first.finish_reason in {"stop", "length"}


def test_it_records_why_a_job_failed(celery_worker, transactional_db) -> None:  # type: ignore[no-untyped-def]
    missing = Path(settings.PREFLAB_DATA_DIR) / "nonexistent" / "weights"
    broken = services.policy_model_create(
        name="missing", backend=PolicyModel.Backend.TRANSFORMERS, source=str(missing)
    )
    job = services.generation_job_create(prompt_set=prompt_set_with_prompts(2), model=broken, k=2)
    done = wait_for(lambda: _job(job.pk).status in GenerationJob.FINISHED and _job(job.pk), 60)
    assert done.status == GenerationJob.Status.FAILED
    assert "nonexistent/weights" in done.error
    assert not Completion.objects.filter(job=job).exists()


def test_it_cancels_between_batches_and_resumes_without_duplicates(
    celery_worker, tiny_policy
) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(40)
    job = services.generation_job_create(
        prompt_set=prompt_set, model=tiny_policy, k=2, max_new_tokens=48, batch_size=1
    )
    wait_for(lambda: _job(job.pk).prompts_done >= 2, 120, interval=0.02)
    services.job_lifecycle.cancel(_job(job.pk))
    cancelled = wait_for(lambda: _job(job.pk).status in GenerationJob.FINISHED and _job(job.pk), 60)
    assert cancelled.status == GenerationJob.Status.CANCELLED
    partial = Completion.objects.filter(job=job).count()
    assert 0 < partial < 80
    assert partial == 2 * cancelled.prompts_done

    services.job_lifecycle.resume(cancelled)
    done = wait_for(lambda: _job(job.pk).status in GenerationJob.FINISHED and _job(job.pk), 180)
    assert done.status == GenerationJob.Status.SUCCEEDED, done.error
    assert Completion.objects.filter(job=job).count() == 80
    assert _per_prompt_counts(done) == {2}
    assert done.attempts == 2


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_it_resumes_a_job_whose_worker_was_killed(tiny_policy, request) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL a worker process mid-job: no half-written batch, the watchdog fails the job,
    and a resumed job writes exactly the missing completions."""
    prompt_set = prompt_set_with_prompts(60)
    job = services.generation_job_create(
        prompt_set=prompt_set, model=tiny_policy, k=2, max_new_tokens=48, batch_size=1
    )
    env = {**os.environ, "DATABASE_URL": _database_url(), "PREFLAB_VAR_DIR": str(settings.VAR_DIR)}
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
            "generation",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=settings.BASE_DIR,
    )
    try:
        wait_for(lambda: _job(job.pk).prompts_done >= 2, 120, interval=0.02)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

    stuck = _job(job.pk)
    assert stuck.status == GenerationJob.Status.RUNNING  # nobody told the database
    written = Completion.objects.filter(job=job).count()
    assert written == 2 * stuck.prompts_done  # whole batches only
    assert _per_prompt_counts(stuck) == {2}

    assert services.job_lifecycle.fail_stale(stale_after=timedelta(seconds=0)) == 1
    failed = _job(job.pk)
    assert failed.status == GenerationJob.Status.FAILED
    assert "heartbeat" in failed.error

    request.getfixturevalue("celery_worker")
    services.job_lifecycle.resume(failed)
    done = wait_for(lambda: _job(job.pk).status in GenerationJob.FINISHED and _job(job.pk), 240)
    assert done.status == GenerationJob.Status.SUCCEEDED, done.error
    assert Completion.objects.filter(job=job).count() == 120
    assert _per_prompt_counts(done) == {2}
