"""Two real Celery worker processes share one generation job; one is SIGKILLed mid-shard
and the other finishes its shard: exactly k completions per prompt, none twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count

from generation import services
from generation.models import Completion, GenerationJob, GenerationShard, PolicyModel
from tests.conftest import wait_for
from tests.generation.factories import prompt_set_with_prompts
from tests.generation.test_job_lifecycle import _database_url


def shards_of(job: GenerationJob):  # type: ignore[no-untyped-def]
    return GenerationShard.objects.filter(job=job).order_by("index")


pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

Status = GenerationJob.Status


def _start_worker(name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PREFLAB_VAR_DIR": str(settings.VAR_DIR),
        "GENERATION_HEARTBEAT_S": "1",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"]
    command += ["--queues", "generation", "--hostname", f"{name}@%h", "--loglevel", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return subprocess.Popen(command, env=env, cwd=settings.BASE_DIR)


def test_it_shares_a_job_between_two_workers_and_hands_on_a_killed_ones_shard(
    tiny_model_path: Path, transactional_db: None
) -> None:
    model = services.policy_model_create(
        name="tiny", backend=PolicyModel.Backend.TRANSFORMERS, source=str(tiny_model_path)
    )
    workers = {name: _start_worker(name) for name in ("first", "second")}
    try:
        job = services.generation_job_create(
            prompt_set=prompt_set_with_prompts(48),
            model=model,
            k=2,
            max_new_tokens=24,
            batch_size=1,
            batches_per_shard=4,
        )
        running = GenerationShard.objects.filter(job=job, status=Status.RUNNING)

        def both_at_work() -> GenerationShard | None:
            # Both have taken shards and one is generating (past loading the model, so it
            # heartbeats steadily): that one is killed mid-shard.
            taken = GenerationShard.objects.filter(job=job).exclude(worker="")
            if len(set(taken.values_list("worker", flat=True))) < 2:
                return None
            return running.filter(prompts_done__gt=0).first()

        shard = wait_for(both_at_work, 120, interval=0.05)
        pid = int(shard.worker.rsplit(":", 1)[1])
        victim = next(p for p in workers.values() if p.pid == pid)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        survivor = f":{next(p for p in workers.values() if p is not victim).pid}"

        # The watchdog (Celery beat runs it every minute; here with a short patience) hands
        # the dead worker's shard to the job's other worker, which is still at work on it.
        def handed_on() -> bool:
            # Heartbeats every second; 8 s of silence is a dead worker even on a busy machine.
            services.shard_lifecycle.fail_stale(stale_after=timedelta(seconds=8))
            shard.refresh_from_db()
            return shard.status != Status.RUNNING or shard.worker.endswith(survivor)

        wait_for(handed_on, 90, interval=0.5)

        def finished() -> GenerationJob | None:
            current = GenerationJob.objects.get(pk=job.pk)
            return current if current.status in GenerationJob.FINISHED else None

        try:
            done = wait_for(finished, 120)
        except AssertionError:
            states = list(shards_of(job).values_list("index", "status", "worker", "prompts_done"))
            raise AssertionError(f"the job did not finish: {states}") from None
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()

    assert done.status == Status.SUCCEEDED, done.error
    shard.refresh_from_db()
    assert shard.status == Status.SUCCEEDED and shard.attempts == 2
    assert shard.worker.endswith(survivor)  # (its claim cleared the hand-over note)
    shards = GenerationShard.objects.filter(job=job)
    assert set(shards.values_list("status", flat=True)) == {Status.SUCCEEDED}
    assert any(w.endswith(survivor) for w in shards.values_list("worker", flat=True))
    rows = Completion.objects.filter(job=job)
    per_prompt = rows.values("prompt").annotate(n=Count("id"))
    assert len(per_prompt) == 48 and {row["n"] for row in per_prompt} == {2}
    assert rows.count() == rows.values("prompt", "sample_index").distinct().count() == 96
    assert done.prompts_done == 48 and done.tokens_generated == sum(
        shards.values_list("tokens_generated", flat=True)
    )
