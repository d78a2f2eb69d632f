"""Writes for the generation app: models, prompt sets, imports and generation jobs."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, F, QuerySet, Sum
from django.utils import timezone

from config.jobs.lifecycle import JobLost, Lifecycle
from config.naming import free_name
from generation import importers
from generation.backends import BackendError, BackendSpec, Sample, SamplingParams, backend_for
from generation.models import (
    Completion,
    GenerationJob,
    GenerationShard,
    PolicyModel,
    Prompt,
    PromptSet,
)
from generation.sources import ModelSourceError, model_source_resolve

logger = logging.getLogger(__name__)

MAX_K = 64


class GenerationError(ValueError):
    """A request that cannot be carried out; the message is shown to the user as is."""


@dataclass(frozen=True)
class ImportResult:
    created: int
    skipped_duplicates: int


# --- models ---------------------------------------------------------------------------------


MAX_SERVERS = 64
# One engine's GPUs: a node's worth and then some (vLLM checks what it can place).
MAX_GPUS = 64


def server_url_check(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; GenerationError naming it otherwise."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url:
        raise GenerationError("a server URL must be a non-empty string")
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise GenerationError(f"server URL {url!r} is not an http:// or https:// URL")
    return url


def policy_model_validate(
    *,
    backend: str,
    source: str,
    server_url: str,
    server_model: str,
    extra_server_urls: Sequence[str] = (),
    tensor_parallel_size: int = 1,
) -> None:
    if backend not in PolicyModel.Backend.values:
        raise GenerationError(f"unknown backend {backend!r}")
    if not isinstance(tensor_parallel_size, int) or not 1 <= tensor_parallel_size <= MAX_GPUS:
        raise GenerationError(f"tensor_parallel_size must be between 1 and {MAX_GPUS}")
    if tensor_parallel_size != 1 and backend != PolicyModel.Backend.VLLM:
        # A server's parallelism is its own launch flag (vllm serve -tp), not ours.
        raise GenerationError("tensor_parallel_size is a setting of the vLLM backend")
    if backend == PolicyModel.Backend.OPENAI:
        if not server_url or not server_model:
            raise GenerationError("an OpenAI-compatible model needs a server URL and a model name")
        urls = [server_url, *extra_server_urls]
        if len(urls) > MAX_SERVERS:
            raise GenerationError(f"a model names at most {MAX_SERVERS} servers")
        for url in urls:
            server_url_check(url)
        if len(set(urls)) != len(urls):
            raise GenerationError("a server URL is named twice")
        return
    if extra_server_urls:
        raise GenerationError("only an OpenAI-compatible model has servers")
    if not source:
        raise GenerationError(f"a {backend} model needs a source: a local folder or a hub id")
    try:
        model_source_resolve(source, settings.PREFLAB_MODEL_ROOTS)
    except ModelSourceError as exc:
        raise GenerationError(str(exc)) from None


@transaction.atomic
def policy_model_create(
    *,
    name: str,
    backend: str,
    source: str = "",
    server_url: str = "",
    extra_server_urls: Sequence[str] = (),
    server_model: str = "",
    use_chat_template: bool = False,
    tensor_parallel_size: int = 1,
    description: str = "",
    parent: PolicyModel | None = None,
    user: User | None = None,
) -> PolicyModel:
    extra_server_urls = list(extra_server_urls)
    policy_model_validate(
        backend=backend,
        source=source,
        server_url=server_url,
        server_model=server_model,
        extra_server_urls=extra_server_urls,
        tensor_parallel_size=tensor_parallel_size,
    )
    if source and backend != PolicyModel.Backend.OPENAI:
        source = model_source_resolve(source, settings.PREFLAB_MODEL_ROOTS)
    if PolicyModel.objects.filter(name=name).exists():
        raise GenerationError(f"a model named {name!r} already exists")
    return PolicyModel.objects.create(
        name=name,
        backend=backend,
        source=source,
        server_url=server_url,
        extra_server_urls=extra_server_urls,
        server_model=server_model,
        use_chat_template=use_chat_template,
        tensor_parallel_size=tensor_parallel_size,
        description=description,
        parent=parent,
        created_by=user,
    )


def policy_model_backend_spec(model: PolicyModel) -> BackendSpec:
    return BackendSpec(
        kind=model.backend,  # type: ignore[arg-type]
        source=model.source,
        use_chat_template=model.use_chat_template,
        server_url=model.server_url,
        extra_server_urls=tuple(model.extra_server_urls or ()),
        server_model=model.server_model,
        tensor_parallel_size=model.tensor_parallel_size,
    )


# --- prompt sets and imports ------------------------------------------------------------------


def text_check_storable(**fields: str) -> None:
    """Raise GenerationError naming the first field that no database can store as given
    (NUL, lone surrogates): refused with a 400, never rewritten, never a 500."""
    for field, value in fields.items():
        problem = importers.unstorable_problem(value)
        if problem is not None:
            raise GenerationError(f"the {field.replace('_', ' ')} {problem}")


@transaction.atomic
def prompt_set_create(*, name: str, description: str = "", user: User | None = None) -> PromptSet:
    name = name.strip()
    if not name:
        raise GenerationError("a prompt set needs a name")
    text_check_storable(name=name, description=description)
    if PromptSet.objects.filter(name=name).exists():
        raise GenerationError(f"a prompt set named {name!r} already exists")
    return PromptSet.objects.create(name=name, description=description, created_by=user)


def _prompt_rows(
    prompt_set: PromptSet, records: Sequence[importers.PromptRecord]
) -> tuple[list[Prompt], dict[str, Prompt], int]:
    """New Prompt rows for ``records``, skipping exact content already in the set or repeated.

    Returns (new rows, every record's prompt by exact hash, duplicates skipped).
    """
    existing = {p.exact_hash: p for p in prompt_set.prompts.all()}
    position = max((p.position for p in existing.values()), default=-1) + 1
    by_hash = dict(existing)
    new: list[Prompt] = []
    skipped = 0
    for record in records:
        key = record.exact_hash
        if key in by_hash:
            skipped += 1
            continue
        prompt = Prompt(
            prompt_set=prompt_set,
            position=position,
            text=record.text,
            messages=record.messages,
            content_hash=record.content_hash,
            exact_hash=key,
        )
        position += 1
        by_hash[key] = prompt
        new.append(prompt)
    return new, by_hash, skipped


@transaction.atomic
def prompt_set_import(
    *, prompt_set: PromptSet, data: bytes | str | IO[bytes], format: str
) -> ImportResult:
    """Add every prompt of a JSONL, CSV or HH-RLHF file to ``prompt_set``, or none.

    Any bad line raises ``importers.ImportFileError`` naming the line, before anything
    is written. Prompts stay byte for byte as in the file; only exact repeats of a prompt
    already in the set are skipped (and counted).
    """
    records = importers.parse_prompts(data, format=format)
    if not records:
        raise importers.ImportFileError(None, "the file holds no prompts")
    # Lock the set so two concurrent imports cannot race on positions and hashes.
    PromptSet.objects.select_for_update().get(pk=prompt_set.pk)
    _, created, skipped = prompt_set_add_records(prompt_set=prompt_set, records=records)
    return ImportResult(created=created, skipped_duplicates=skipped)


def prompt_set_add_records(
    *, prompt_set: PromptSet, records: Sequence[importers.PromptRecord]
) -> tuple[dict[str, Prompt], int, int]:
    """Store the records that are new to the set (the caller holds the transaction).

    Returns (every record's prompt by exact hash, prompts created, duplicates skipped).
    """
    new, by_hash, skipped = _prompt_rows(prompt_set, records)
    Prompt.objects.bulk_create(new, batch_size=1000)
    return by_hash, len(new), skipped


# --- jobs -------------------------------------------------------------------------------------


MAX_BATCHES_PER_SHARD = 100_000


def _validate_job_params(
    *,
    k: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    batches_per_shard: int = 32,
) -> None:
    if not 1 <= k <= MAX_K:
        raise GenerationError(f"k must be between 1 and {MAX_K}")
    if temperature < 0:
        raise GenerationError("temperature must be >= 0")
    if not 0 < top_p <= 1:
        raise GenerationError("top_p must be in (0, 1]")
    if not 1 <= max_new_tokens <= 8192:
        raise GenerationError("max_new_tokens must be between 1 and 8192")
    if not 1 <= batch_size <= 1024:
        raise GenerationError("batch_size must be between 1 and 1024")
    if not 1 <= batches_per_shard <= MAX_BATCHES_PER_SHARD:
        raise GenerationError(f"batches_per_shard must be between 1 and {MAX_BATCHES_PER_SHARD}")


@transaction.atomic
def generation_job_create(
    *,
    prompt_set: PromptSet,
    model: PolicyModel,
    k: int = 4,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    stop: Sequence[str] = (),
    batch_size: int = 8,
    batches_per_shard: int = 32,
    name: str = "",
    user: User | None = None,
) -> GenerationJob:
    """Queue a job sampling ``k`` completions per prompt, split into shards of
    ``batches_per_shard`` batches; workers start on them after the commit."""
    _validate_job_params(
        k=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        batches_per_shard=batches_per_shard,
    )
    stop_list = [s for s in stop if s]
    total = prompt_set.prompts.count()
    if total == 0:
        raise GenerationError(f"prompt set {prompt_set.name!r} has no prompts")
    job = GenerationJob.objects.create(
        name=name or f"{model.name} × {prompt_set.name} (k={k})",
        prompt_set=prompt_set,
        model=model,
        k=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        stop=stop_list,
        batch_size=batch_size,
        batches_per_shard=batches_per_shard,
        prompts_total=total,
        created_by=user,
    )
    generation_job_split(job=job)
    job_lifecycle.enqueue(job)
    return job


def generation_job_split(*, job: GenerationJob) -> list[GenerationShard]:
    """Cut the job's prompts, in position order, into shards of whole batches (the caller
    holds the transaction). A job that has shards keeps them."""
    if job.shards.exists():
        return list(job.shards.all())
    positions = list(
        job.prompt_set.prompts.order_by("position").values_list("position", flat=True)
    )[: job.prompts_total]
    size = job.batch_size * job.batches_per_shard
    shards = [
        GenerationShard(
            job=job,
            index=index,
            position_from=chunk[0],
            position_to=chunk[-1],
            prompts_total=len(chunk),
        )
        for index, chunk in enumerate(
            positions[start : start + size] for start in range(0, len(positions), size)
        )
    ]
    if shards:
        # A job from before shards (resumed now) keeps the tokens it counted then.
        shards[0].tokens_generated = job.tokens_generated
    return GenerationShard.objects.bulk_create(shards)


@transaction.atomic
def generation_job_import(
    *,
    data: bytes | str | IO[bytes],
    format: str,
    name: str,
    source_name: str = "",
    prompt_set: PromptSet | None = None,
    user: User | None = None,
) -> GenerationJob:
    """Fill a job from completions someone already has (JSONL or HH-RLHF), atomically.

    Prompts go into ``prompt_set`` (or a new set named after the job), byte for byte as in
    the file; a prompt repeated exactly in the file is one prompt that keeps every group of
    completions, the later ones at further sample indices, so nothing imported is dropped.
    """
    groups = importers.parse_imported_completions(data, format=format)
    if not groups:
        raise importers.ImportFileError(None, "the file holds no prompts")
    text_check_storable(name=name, source_name=source_name)
    name = name.strip() or source_name or "imported completions"
    if prompt_set is None:
        prompt_set = prompt_set_create(name=prompt_set_free_name(name), user=user)
    else:
        PromptSet.objects.select_for_update().get(pk=prompt_set.pk)
    by_hash, _, _ = prompt_set_add_records(
        prompt_set=prompt_set, records=[g.prompt for g in groups]
    )

    counts: dict[str, int] = {}
    rows: list[Completion] = []
    for group in groups:
        key = group.prompt.exact_hash
        base = counts.get(key, 0)
        counts[key] = base + len(group.completions)
        prompt = by_hash[key]
        for index, text in enumerate(group.completions):
            rows.append(
                Completion(
                    prompt=prompt,
                    sample_index=base + index,
                    text=text,
                    model_name=group.model_name,
                )
            )
    job = generation_job_create_imported(
        name=name,
        prompt_set=prompt_set,
        source_name=source_name,
        k=max(counts.values()),
        prompts=len(counts),
        user=user,
    )
    for row in rows:
        row.job = job
    Completion.objects.bulk_create(rows, batch_size=1000)
    return job


def generation_job_create_imported(
    *,
    name: str,
    prompt_set: PromptSet,
    source_name: str,
    k: int,
    prompts: int,
    user: User | None = None,
) -> GenerationJob:
    """A finished job that holds completions brought in from a file (the caller adds them)."""
    now = timezone.now()
    return GenerationJob.objects.create(
        name=name,
        prompt_set=prompt_set,
        source=GenerationJob.Source.IMPORTED,
        import_source=source_name,
        k=k,
        status=GenerationJob.Status.SUCCEEDED,
        prompts_total=prompts,
        prompts_done=prompts,
        created_by=user,
        started_at=now,
        finished_at=now,
    )


def prompt_set_free_name(name: str) -> str:
    """``name``, or ``name (2)``, ``name (3)``... whichever no prompt set has yet."""
    return free_name(PromptSet, name)


class GenerationJobLifecycle(Lifecycle[GenerationJob]):
    def check_resume(self, job: GenerationJob) -> None:
        if job.source == GenerationJob.Source.IMPORTED:
            raise GenerationError("an imported job has nothing to generate")

    def enqueue(self, job: GenerationJob) -> None:
        """One task per queued shard: as many workers as there are shards can join in."""
        count = job.shards.filter(status=GenerationShard.Status.QUEUED).count()
        for _ in range(max(1, count)):
            super().enqueue(job)

    @transaction.atomic
    def cancel(self, job: GenerationJob) -> GenerationJob:
        job = super().cancel(job)
        if job.status == GenerationJob.Status.CANCELLED:
            generation_job_settle(job_id=job.pk)  # a queued job's shards stop with it
        return job

    def resume_fields(self, job: GenerationJob) -> dict[str, Any]:
        # Every shard that did not succeed goes back in the queue (the caller holds the
        # transaction and the job's lock); its completions so far are skipped when it runs.
        generation_job_split(job=job)
        job.shards.exclude(status=GenerationShard.Status.SUCCEEDED).update(
            status=GenerationShard.Status.QUEUED,
            cancel_requested=False,
            error="",
            finished_at=None,
            worker="",
        )
        return {}


job_lifecycle = GenerationJobLifecycle(
    GenerationJob,
    errors=(GenerationError, BackendError),
    task="generation.tasks.generation_job_run",
    related=("model", "prompt_set"),
)


# --- running a job (called by the Celery task) --------------------------------------------------

# A shard whose workers died this many times fails instead of being handed on again (a
# prompt that kills every worker must not go round forever).
MAX_SHARD_ATTEMPTS = 3


class GenerationShardLifecycle(Lifecycle[GenerationShard]):
    def fail_stale(self, *, stale_after: timedelta | None = None) -> int:
        """Hand the shards of dead workers to the job's other workers: a stale shard of a
        job whose heartbeat is fresh (another worker is on it) is queued again, and a task
        enqueued for it. The other stale shards fail (their job fails for the same reason).
        Returns how many shards were handed on or failed."""
        if stale_after is None:
            stale_after = timedelta(seconds=settings.GENERATION_STALE_AFTER_S)
        cutoff = timezone.now() - stale_after
        with transaction.atomic():
            handed = list(
                GenerationShard.objects.select_for_update(of=("self",))
                .filter(
                    status=GenerationShard.Status.RUNNING,
                    heartbeat_at__lt=cutoff,
                    attempts__lt=MAX_SHARD_ATTEMPTS,
                    job__status=GenerationJob.Status.RUNNING,
                    job__heartbeat_at__gte=cutoff,
                )
                .values_list("pk", "job_id", "worker")
            )
            for pk, job_id, worker in handed:
                GenerationShard.objects.filter(pk=pk).update(
                    status=GenerationShard.Status.QUEUED,
                    worker="",
                    error=(
                        f"Worker {worker} stopped sending heartbeats for over "
                        f"{int(stale_after.total_seconds())} s; the shard went back to the job's "
                        "other workers."
                    ),
                )
                logger.warning(
                    "shard %s of job %s handed on from dead worker %s", pk, job_id, worker
                )
                _enqueue_one(job_id)
        return len(handed) + super().fail_stale(stale_after=stale_after)


shard_lifecycle = GenerationShardLifecycle(
    GenerationShard, errors=(GenerationError, BackendError), related=("job",)
)


def _enqueue_one(job_id: int) -> None:
    from generation.tasks import generation_job_run

    transaction.on_commit(lambda: generation_job_run.delay(job_id))


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _JobStopped(Exception):
    """The job left the running state (failed in another shard, by the watchdog, deleted)."""


def _chunks(items: Sequence[Prompt], size: int) -> Iterator[Sequence[Prompt]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generation_job_execute(
    *, job_id: int, heartbeat_interval: float | None = None, worker: str | None = None
) -> str:
    """Work on a job: take its queued shards one at a time until none is left. Any number
    of workers run this on the same job at once; each shard goes to one of them.

    The first worker moves the job from queued to running. Each batch's completions and
    the progress counters commit in one transaction, so a worker killed mid-batch leaves no
    half-written rows, and a shard run again skips the prompts that already have all k
    completions. Returns the job's status when this worker stops ("skipped" when it found
    the job neither queued nor running). ``worker`` names this worker on the shards it
    takes (``<host>:<pid>`` by default).
    """
    interval = float(heartbeat_interval or settings.GENERATION_HEARTBEAT_S)
    job_lifecycle.claim(job_id)
    job = GenerationJob.objects.select_related("model", "prompt_set").filter(pk=job_id).first()
    if job is None or job.status != GenerationJob.Status.RUNNING:
        logger.info("generation job %s is not running (finished, cancelled or gone)", job_id)
        return "skipped"
    worker = worker or _worker_name()
    try:
        with job_lifecycle.heartbeat(job_id, interval):
            _take_shards(job, worker, interval)
    finally:
        generation_job_settle(job_id=job_id)
    return job_lifecycle.status_of(job_id)


def _take_shards(job: GenerationJob, worker: str, interval: float) -> None:
    shards = GenerationShard.objects.filter(job=job)
    while GenerationJob.objects.filter(
        pk=job.pk, status=GenerationJob.Status.RUNNING, cancel_requested=False
    ).exists():
        shard = shard_lifecycle.execute_next(
            shards,
            lambda shard: _run_shard(job, shard),
            heartbeat_interval=interval,
            claim_fields={"worker": worker},
        )
        if shard is None:
            return
        if shard.status == GenerationShard.Status.FAILED:
            # What failed one shard (a missing model, a refusing server) fails the others:
            # they stop at their next batch.
            job_lifecycle.fail(job.pk, shard.error)
            return


@transaction.atomic
def generation_job_settle(*, job_id: int) -> str:
    """End a running job once no shard is running: cancelled when asked to stop, failed
    when a shard failed, succeeded when every shard did. Returns the job's status."""
    job = GenerationJob.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        return "gone"
    shards = job.shards.all()
    if job.status in GenerationJob.FINISHED:
        # Failed in a shard or cancelled while queued: nothing is left for a worker to take.
        shards.filter(status=GenerationShard.Status.QUEUED).update(
            status=GenerationShard.Status.CANCELLED, finished_at=timezone.now()
        )
        return job.status
    if job.status != GenerationJob.Status.RUNNING:
        return job.status
    if shards.filter(status=GenerationShard.Status.RUNNING).exists():
        return job.status
    totals = _shard_totals(job)
    failed = shards.filter(status=GenerationShard.Status.FAILED).order_by("index").first()
    if job.cancel_requested or failed is not None:
        shards.filter(status=GenerationShard.Status.QUEUED).update(
            status=GenerationShard.Status.CANCELLED, finished_at=timezone.now()
        )
        if failed is not None and not job.cancel_requested:
            job_lifecycle.fail(job.pk, f"shard {failed.index}: {failed.error}", **totals)
        else:
            job_lifecycle.finish(job.pk, GenerationJob.Status.CANCELLED, **totals)
    elif not shards.exclude(status=GenerationShard.Status.SUCCEEDED).exists():
        elapsed = (timezone.now() - job.started_at).total_seconds() if job.started_at else 0
        done_now = (
            shards.filter(started_at__gte=job.started_at).aggregate(t=Sum("tokens_generated"))["t"]
            if job.started_at
            else None
        )
        if elapsed > 0 and done_now:
            # The job's own throughput: tokens of this run over its wall-clock time.
            totals["tokens_per_second"] = done_now / elapsed
        job_lifecycle.finish(job.pk, GenerationJob.Status.SUCCEEDED, **totals)
    return job_lifecycle.status_of(job.pk)


def _shard_totals(job: GenerationJob) -> dict[str, Any]:
    sums = job.shards.aggregate(done=Sum("prompts_done"), tokens=Sum("tokens_generated"))
    return {"prompts_done": sums["done"] or 0, "tokens_generated": sums["tokens"] or 0}


def _shard_prompts(job: GenerationJob, shard: GenerationShard) -> tuple[list[Prompt], int]:
    """The shard's prompts that still lack completions, and how many it has complete."""
    prompts = job.prompt_set.prompts.filter(
        position__gte=shard.position_from, position__lte=shard.position_to
    )
    complete = (
        Completion.objects.filter(job=job, prompt__in=prompts)
        .values("prompt_id")
        .annotate(n=Count("id"))
        .filter(n__gte=job.k)
        .values_list("prompt_id", flat=True)
    )
    remaining = list(prompts.exclude(id__in=complete).order_by("position"))
    return remaining, shard.prompts_total - len(remaining)


def _run_shard(job: GenerationJob, shard: GenerationShard) -> None:
    if job.model is None:
        raise GenerationError("the job has no model to sample from")
    mine = GenerationShard.objects.filter(
        pk=shard.pk,
        status=GenerationShard.Status.RUNNING,
        worker=shard.worker,
        attempts=shard.attempts,
    )
    remaining, done_before = _shard_prompts(job, shard)
    if not mine.update(prompts_done=done_before):
        raise JobLost
    backend = backend_for(policy_model_backend_spec(job.model))
    base = job.sampling_params()
    started = time.perf_counter()
    tokens = 0
    try:
        for batch in _chunks(remaining, job.batch_size):
            if job_lifecycle.cancel_requested(job.pk):
                shard_lifecycle.finish(shard.pk, GenerationShard.Status.CANCELLED)
                return
            # The seed depends on the batch's first prompt, so a resumed job is
            # reproducible batch by batch with the same batch size, on any worker.
            seed = int(base["seed"]) + batch[0].position  # type: ignore[call-overload]
            params = SamplingParams(
                temperature=float(base["temperature"]),  # type: ignore[arg-type]
                top_p=float(base["top_p"]),  # type: ignore[arg-type]
                max_new_tokens=int(base["max_new_tokens"]),  # type: ignore[call-overload]
                seed=seed,
                stop=tuple(base["stop"]),  # type: ignore[arg-type]
            )
            inputs = [p.messages if p.messages else p.text for p in batch]
            samples = backend.generate(inputs, job.k, params)  # type: ignore[arg-type]
            if len(samples) != len(batch) or any(len(s) != job.k for s in samples):
                raise BackendError("the backend returned a different number of samples than asked")
            tokens += sum(s.completion_tokens or 0 for group in samples for s in group)
            elapsed = max(time.perf_counter() - started, 1e-6)
            _write_batch(job, mine, batch, samples, params, tokens_per_second=tokens / elapsed)
    except _JobStopped:
        shard_lifecycle.finish(shard.pk, GenerationShard.Status.CANCELLED, error="the job stopped")
        return
    shard_lifecycle.finish(shard.pk, GenerationShard.Status.SUCCEEDED)


@transaction.atomic
def _write_batch(
    job: GenerationJob,
    mine: QuerySet[GenerationShard],
    batch: Sequence[Prompt],
    samples: list[list[Sample]],
    params: SamplingParams,
    *,
    tokens_per_second: float,
) -> None:
    """The batch's completions, its shard's progress and the job's sums, in one commit."""
    param_dict: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_new_tokens": params.max_new_tokens,
        "stop": list(params.stop),
    }
    rows = []
    for prompt, group in zip(batch, samples, strict=True):
        for index, sample in enumerate(group):
            # The text exactly as the backend decoded it, except what no column can hold.
            text, replaced = importers.storable_generated_text(sample.text)
            rows.append(
                Completion(
                    job=job,
                    prompt=prompt,
                    sample_index=index,
                    text=text,
                    model=job.model,
                    model_name=job.model.name if job.model else "",
                    prompt_tokens=sample.prompt_tokens,
                    completion_tokens=sample.completion_tokens,
                    finish_reason=sample.finish_reason,
                    seed=params.seed,
                    params={**param_dict, "unstorable_replaced": replaced}
                    if replaced
                    else param_dict,
                )
            )
    new_tokens = sum(s.completion_tokens or 0 for group in samples for s in group)
    # Only while the shard is still this worker's (the watchdog may have handed it on).
    if not mine.update(
        prompts_done=F("prompts_done") + len(batch),
        tokens_generated=F("tokens_generated") + new_tokens,
        tokens_per_second=tokens_per_second,
        heartbeat_at=timezone.now(),
    ):
        raise JobLost
    # ignore_conflicts: a sample index already written by an earlier attempt stays as is.
    Completion.objects.bulk_create(rows, ignore_conflicts=True)
    running = GenerationShard.objects.filter(job=job, status=GenerationShard.Status.RUNNING)
    try:
        job_lifecycle.update_running(
            job.pk,
            **_shard_totals(job),
            # Throughput adds up: every worker's rate right now.
            tokens_per_second=running.aggregate(r=Sum("tokens_per_second"))["r"],
            heartbeat_at=timezone.now(),
        )
    except JobLost:
        raise _JobStopped from None
