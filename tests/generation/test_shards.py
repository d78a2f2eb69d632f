"""Generation jobs split into shards: the split, the sums, the hand-over of a dead worker's
shard, cancel and resume (run in this process against a loopback OpenAI-compatible peer;
tests/generation/test_shards_workers.py runs two real worker processes)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from config.jobs.lifecycle import background_jobs_fail_stale
from generation import services
from generation.models import Completion, GenerationJob, GenerationShard, PolicyModel
from tests.generation.factories import prompt_set_with_prompts

Status = GenerationJob.Status


@pytest.fixture
def served(db) -> Iterator[PolicyModel]:  # type: ignore[no-untyped-def]
    """A model served by a loopback peer that echoes each prompt with 3 tokens a sample."""

    class Peer(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            choices = [
                {"index": i, "text": f"{body['prompt']}#{i}/{body['seed']}"}
                for i in range(body["n"])
            ]
            usage = {"completion_tokens": 3 * body["n"]}
            payload = json.dumps({"choices": choices, "usage": usage}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Peer)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield services.policy_model_create(
        name="peer",
        backend=PolicyModel.Backend.OPENAI,
        server_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1",
        server_model="m",
    )
    httpd.shutdown()
    httpd.server_close()


def _job(model: PolicyModel, prompts: int = 10, **fields: int) -> GenerationJob:
    return services.generation_job_create(
        prompt_set=prompt_set_with_prompts(prompts),
        model=model,
        k=2,
        max_new_tokens=4,
        batch_size=fields.get("batch_size", 2),
        batches_per_shard=fields.get("batches_per_shard", 2),
    )


def _per_prompt(job: GenerationJob) -> list[int]:
    rows = Completion.objects.filter(job=job).values("prompt").annotate(n=Count("id"))
    return sorted(row["n"] for row in rows)


def test_it_splits_a_job_into_shards_of_whole_batches(served: PolicyModel) -> None:
    job = _job(served, prompts=11, batch_size=2, batches_per_shard=2)
    shards = list(job.shards.order_by("index"))
    assert [(s.position_from, s.position_to, s.prompts_total) for s in shards] == [
        (0, 3, 4),
        (4, 7, 4),
        (8, 10, 3),
    ]
    assert {s.status for s in shards} == {Status.QUEUED}


def test_it_refuses_a_bad_shard_size(served: PolicyModel) -> None:
    with pytest.raises(services.GenerationError, match="batches_per_shard must be between"):
        _job(served, batches_per_shard=0)


def test_it_runs_every_shard_and_adds_their_progress_up(served: PolicyModel) -> None:
    job = _job(served, prompts=10)
    assert services.generation_job_execute(job_id=job.pk) == Status.SUCCEEDED
    job.refresh_from_db()
    shards = list(job.shards.order_by("index"))
    assert [s.status for s in shards] == [Status.SUCCEEDED] * 3
    assert all(s.worker and s.prompts_done == s.prompts_total for s in shards)
    assert job.prompts_done == job.prompts_total == 10
    assert job.tokens_generated == sum(s.tokens_generated for s in shards) == 10 * 2 * 3
    assert job.tokens_per_second and job.attempts == 1
    assert _per_prompt(job) == [2] * 10
    # Whole batches: the seed of each is the job's seed plus its first prompt's position.
    seeds = set(Completion.objects.filter(job=job).values_list("seed", flat=True))
    assert seeds == {0, 2, 4, 6, 8}


def _claim_as_dead_worker(job: GenerationJob, index: int, *, job_fresh: bool) -> GenerationShard:
    """What a worker killed mid-shard leaves: the job and the shard running, the shard's
    heartbeat old (the job's too when no other worker is on it), one batch written."""
    long_ago = timezone.now() - timedelta(minutes=10)
    assert services.job_lifecycle.claim(job.pk)
    GenerationJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() if job_fresh else long_ago
    )
    shard = job.shards.get(index=index)
    assert services.shard_lifecycle.claim(shard.pk, worker="gone-host:4242")
    GenerationShard.objects.filter(pk=shard.pk).update(heartbeat_at=long_ago)
    first = job.prompt_set.prompts.get(position=shard.position_from)
    Completion.objects.create(job=job, prompt=first, sample_index=0, text="kept", seed=1)
    return shard


def test_it_hands_a_dead_workers_shard_to_the_jobs_other_workers(served: PolicyModel) -> None:
    job = _job(served, prompts=10)
    shard = _claim_as_dead_worker(job, 1, job_fresh=True)

    counts = background_jobs_fail_stale()  # the watchdog, as Celery beat runs it
    assert counts["generation.GenerationShard"] == 1
    assert counts["generation.GenerationJob"] == 0  # another worker is on the job
    shard.refresh_from_db()
    assert shard.status == Status.QUEUED
    assert "gone-host:4242 stopped sending heartbeats" in shard.error

    # The job is running: a worker joins it and takes every queued shard, the handed-on one
    # included, writing only what is missing.
    assert services.generation_job_execute(job_id=job.pk) == Status.SUCCEEDED
    shard.refresh_from_db()
    assert shard.status == Status.SUCCEEDED and shard.attempts == 2
    assert shard.worker != "gone-host:4242"
    assert _per_prompt(job) == [2] * 10
    assert Completion.objects.filter(job=job, text="kept").count() == 1


def test_it_fails_a_job_that_no_worker_is_left_on_and_resumes_it(served: PolicyModel) -> None:
    job = _job(served, prompts=10)
    shard = _claim_as_dead_worker(job, 0, job_fresh=False)

    counts = background_jobs_fail_stale()
    assert counts == {**counts, "generation.GenerationShard": 1, "generation.GenerationJob": 1}
    job.refresh_from_db()
    shard.refresh_from_db()
    assert job.status == shard.status == Status.FAILED
    assert "heartbeat" in job.error and "resume the job" in shard.error

    services.job_lifecycle.resume(job)
    assert set(job.shards.values_list("status", flat=True)) == {Status.QUEUED}
    assert services.generation_job_execute(job_id=job.pk) == Status.SUCCEEDED
    job.refresh_from_db()
    assert job.attempts == 2 and job.prompts_done == 10
    assert _per_prompt(job) == [2] * 10


def test_it_cancels_the_shards_of_a_queued_job(served: PolicyModel) -> None:
    job = _job(served, prompts=10)
    services.job_lifecycle.cancel(job)
    assert set(job.shards.values_list("status", flat=True)) == {Status.CANCELLED}
    assert services.generation_job_execute(job_id=job.pk) == "skipped"
    assert not Completion.objects.filter(job=job).exists()


def test_it_stops_at_the_next_shard_when_cancelled(served: PolicyModel) -> None:
    job = _job(served, prompts=10)
    assert services.job_lifecycle.claim(job.pk)
    GenerationJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert services.generation_job_execute(job_id=job.pk) == Status.CANCELLED
    assert set(job.shards.values_list("status", flat=True)) == {Status.CANCELLED}


def test_it_fails_the_job_with_the_error_of_a_failed_shard(db) -> None:  # type: ignore[no-untyped-def]
    missing = Path(settings.PREFLAB_DATA_DIR) / "nonexistent" / "weights"
    broken = services.policy_model_create(
        name="broken", backend=PolicyModel.Backend.TRANSFORMERS, source=str(missing)
    )
    job = _job(broken, prompts=10)
    assert services.generation_job_execute(job_id=job.pk) == Status.FAILED
    job.refresh_from_db()
    assert "nonexistent/weights" in job.error
    statuses = list(job.shards.order_by("index").values_list("status", flat=True))
    assert statuses == [Status.FAILED, Status.CANCELLED, Status.CANCELLED]


def test_it_shows_each_shard_and_its_worker_on_the_job_page(
    served: PolicyModel, client, carol
) -> None:  # type: ignore[no-untyped-def]
    job = _job(served, prompts=10)
    _claim_as_dead_worker(job, 1, job_fresh=True)
    client.force_login(carol)
    partial = client.get(f"{job.get_absolute_url()}?poll=1", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    body = partial.content.decode()
    assert 'id="job-shards"' in body and "<code>gone-host:4242</code>" in body
    assert body.count('<span class="badge status-queued">') == 2
    assert "5–8" in body  # shard 1: the prompts at positions 4..7, counted from 1
