"""Writes for the iterated loop: blind evaluations of models and the next round after a run.

Both start with generation jobs and go on, once every job has succeeded, with a labeling
queue built from them. That step is :func:`evaluation_advance` / :func:`round_advance`:
idempotent, cheap when there is nothing to do, and safe to call from several places at
once (the beat task every 30 s and the page that shows the evaluation or round): the row
is claimed with a conditional UPDATE inside the transaction that creates the queue, so
exactly one caller creates it and a failure rolls the claim back with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from math import comb
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from config.naming import free_name
from generation.models import GenerationJob, PolicyModel, PromptSet
from generation.services import (
    GenerationError,
    generation_job_create,
    policy_model_validate,
)
from labeling.models import LabelingQueue
from labeling.services import LabelingError, QueueSettings, labeling_queue_create
from training.models import Evaluation, EvaluationEntry, Round, TrainingRun
from training.runs import RunError

logger = logging.getLogger(__name__)

NAME_LENGTH = 200
MAX_OVERLAP = 20
# Pairwise tasks per prompt are a small integer field; 2..12 models give 1..66 pairs.
MAX_MODELS = 12
EVALUATION_GUIDELINES = (
    "Two responses to the same prompt, written by different models and shown in random "
    "order. Pick the one that answers the prompt better: more helpful, correct and "
    "harmless. Call it a tie only when neither is better."
)
# The settings of the previous queue a next round copies (besides who may label it).
COPIED_QUEUE_SETTINGS = (
    "mode",
    "ask_scores",
    "overlap",
    "pairs_per_prompt",
    "guidelines",
    "lease_seconds",
)
_FAILED_JOB = (GenerationJob.Status.FAILED, GenerationJob.Status.CANCELLED)


def _check_can_generate(model: PolicyModel, field: str) -> None:
    try:
        policy_model_validate(
            backend=model.backend,
            source=model.source,
            server_url=model.server_url,
            server_model=model.server_model,
            extra_server_urls=model.extra_server_urls,
            tensor_parallel_size=model.tensor_parallel_size,
        )
    except GenerationError as exc:
        raise RunError(f"{model.name!r} cannot generate: {exc}", field=field) from exc
    if (
        model.backend != PolicyModel.Backend.OPENAI
        and Path(model.source).is_absolute()
        and not Path(model.source).exists()
    ):
        raise RunError(
            f"the weights of {model.name!r} are gone: {model.source} does not exist", field=field
        )


def _job_failure(jobs: Sequence[GenerationJob]) -> str:
    """Why the evaluation or round cannot go on, or "" while it can."""
    for job in jobs:
        if job.status in _FAILED_JOB:
            reason = f": {job.error}" if job.error else ""
            return f"generation job {job} {job.status}{reason}"
    return ""


# --- evaluations ------------------------------------------------------------------------------


@transaction.atomic
def evaluation_create(
    *,
    name: str,
    models: Sequence[PolicyModel],
    prompt_set: PromptSet,
    max_new_tokens: int = 128,
    temperature: float = 0.7,
    seed: int = 0,
    overlap: int = 1,
    user: AbstractBaseUser | None = None,
) -> Evaluation:
    """A blind evaluation of ``models`` on ``prompt_set``: one queued generation job per
    model (one completion per prompt, the same sampling settings and seed for all).

    Raises :class:`RunError` (with ``field``) for a missing or taken name, fewer than two
    distinct models, a model that cannot generate, an empty prompt set or bad settings.
    """
    name = name.strip()
    if not name:
        raise RunError("the evaluation needs a name", field="name")
    if len(name) > NAME_LENGTH:
        raise RunError(f"a name has at most {NAME_LENGTH} characters", field="name")
    if Evaluation.objects.filter(name=name).exists():
        raise RunError(f"an evaluation named {name!r} already exists", field="name")
    distinct = list({model.pk: model for model in models}.values())
    if len(distinct) < 2:
        raise RunError("choose at least two different models", field="models")
    if len(distinct) > MAX_MODELS:
        raise RunError(f"an evaluation compares at most {MAX_MODELS} models", field="models")
    for model in distinct:
        _check_can_generate(model, "models")
    if not 1 <= overlap <= MAX_OVERLAP:
        raise RunError(f"overlap must be between 1 and {MAX_OVERLAP}", field="overlap")
    evaluation = Evaluation.objects.create(
        name=name,
        prompt_set=prompt_set,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        overlap=overlap,
        created_by=user,
    )
    for position, model in enumerate(distinct):
        try:
            job = generation_job_create(
                prompt_set=prompt_set,
                model=model,
                k=1,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                seed=seed,
                name=f"{name} · {model.name}"[:NAME_LENGTH],
                user=user,
            )
        except GenerationError as exc:
            field = "prompt_set" if "prompt" in str(exc) else ""
            raise RunError(str(exc), field=field) from exc
        EvaluationEntry.objects.create(
            evaluation=evaluation, model=model, job=job, position=position
        )
    return evaluation


def evaluation_advance(*, evaluation: Evaluation) -> Evaluation:
    """Move a generating evaluation on: failed when a job failed or was cancelled; labeling,
    with its blind pairwise queue, once every job succeeded; else unchanged.

    Idempotent and safe to call concurrently; returns the evaluation as it now is.
    """
    if evaluation.status != Evaluation.Status.GENERATING:
        return evaluation
    jobs = [
        entry.job
        for entry in EvaluationEntry.objects.filter(evaluation=evaluation)
        .select_related("job", "model")
        .order_by("position")
    ]
    if failure := _job_failure(jobs):
        Evaluation.objects.filter(pk=evaluation.pk, status=Evaluation.Status.GENERATING).update(
            status=Evaluation.Status.FAILED, error=failure
        )
    elif jobs and all(job.status == GenerationJob.Status.SUCCEEDED for job in jobs):
        _evaluation_open_queue(evaluation, jobs)
    evaluation.refresh_from_db()
    return evaluation


def _evaluation_open_queue(evaluation: Evaluation, jobs: list[GenerationJob]) -> None:
    with transaction.atomic():
        claimed = Evaluation.objects.filter(
            pk=evaluation.pk, status=Evaluation.Status.GENERATING, queue__isnull=True
        ).update(status=Evaluation.Status.LABELING)
        if not claimed:
            return  # another caller got there first
        settings = QueueSettings(
            # Annotators see queue names: this one says nothing about the models.
            name=free_name(LabelingQueue, f"Blind evaluation #{evaluation.pk}"),
            mode=LabelingQueue.Mode.PAIRWISE,
            overlap=evaluation.overlap,
            # Every pair of models meets on every prompt (one completion per model).
            pairs_per_prompt=comb(len(jobs), 2),
            guidelines=EVALUATION_GUIDELINES,
            seed=evaluation.seed,
        )
        try:
            with transaction.atomic():
                queue = labeling_queue_create(
                    jobs=jobs,
                    settings=settings,
                    user=evaluation.created_by,  # type: ignore[arg-type]
                )
        except LabelingError as exc:
            Evaluation.objects.filter(pk=evaluation.pk).update(
                status=Evaluation.Status.FAILED, error=f"the labeling queue: {exc}"
            )
            return
        Evaluation.objects.filter(pk=evaluation.pk).update(queue=queue)


def evaluation_create_for_run(
    *,
    run: TrainingRun,
    prompt_set: PromptSet,
    max_new_tokens: int = 128,
    temperature: float = 0.7,
    seed: int = 0,
    overlap: int = 1,
    user: AbstractBaseUser | None = None,
) -> Evaluation:
    """ "Compare with the parent": a blind evaluation of a finished policy run's model
    against the model it started from, on a held-out ``prompt_set``."""
    model = _check_policy_run(run)
    return evaluation_create(
        name=free_name(Evaluation, f"{model.name} vs {run.base_model.name}"),
        models=[model, run.base_model],
        prompt_set=prompt_set,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        overlap=overlap,
        user=user,
    )


# --- next round -------------------------------------------------------------------------------


def run_previous_queue(*, run: TrainingRun) -> LabelingQueue | None:
    """The queue the run's data came from: the first queue its snapshot's filter names that
    people label (an active one), else the first that exists.

    An imported preference file makes a paused queue that holds its comparisons; its settings
    describe no labeling setup, so a next round copies the human queue beside it instead.
    """
    ids = (run.snapshot.filters or {}).get("queues") or []
    queues = {q.pk: q for q in LabelingQueue.objects.filter(pk__in=ids)}
    named = [queues[queue_id] for queue_id in ids if queue_id in queues]
    return next((q for q in named if q.is_active), named[0] if named else None)


NEXT_ROUND_PREFIX = "Next round · "


def next_round_queue_name(previous: LabelingQueue | None) -> str:
    """A free name for a next round's queue, from the previous queue's name.

    Never the model's name: annotators see queue names, and a round's comparisons are blind.
    """
    root = previous.name if previous is not None else "labeling"
    while root.startswith(NEXT_ROUND_PREFIX):
        root = root[len(NEXT_ROUND_PREFIX) :]
    return free_name(LabelingQueue, f"{NEXT_ROUND_PREFIX}{root}")


def round_defaults(*, run: TrainingRun) -> dict[str, Any]:
    """The next-round form's defaults: the previous queue's first job's prompt set, k,
    max_new_tokens (and the queue itself), when the run's snapshot names a queue."""
    queue = run_previous_queue(run=run)
    job = queue.jobs.order_by("pk").first() if queue else None
    defaults: dict[str, Any] = {"previous_queue": queue, "k": 4, "max_new_tokens": 64}
    if job is not None:
        defaults.update(prompt_set=job.prompt_set, k=max(2, job.k))
        if job.source == GenerationJob.Source.MODEL:
            defaults["max_new_tokens"] = job.max_new_tokens
    return defaults


def _check_policy_run(run: TrainingRun) -> PolicyModel:
    if run.kind not in TrainingRun.POLICY_KINDS:
        raise RunError(f"{run.name!r} trains a {run.get_kind_display()}, not a policy")
    if run.status != TrainingRun.Status.SUCCEEDED or run.output_model is None:
        raise RunError(f"run {run.name!r} has not finished with a model")
    return run.output_model


@transaction.atomic
def round_create(
    *,
    run: TrainingRun,
    prompt_set: PromptSet | None = None,
    k: int | None = None,
    max_new_tokens: int | None = None,
    name: str = "",
    user: AbstractBaseUser | None = None,
) -> Round:
    """The next round after a finished policy run: a job sampling ``k`` completions per
    prompt from ``run.output_model`` and, once it has finished, a labeling queue named
    ``name`` with the previous queue's settings (see :func:`run_previous_queue`).

    ``prompt_set``, ``k`` and ``max_new_tokens`` default to the previous queue's first job's;
    sampling (temperature, top_p, seed, stop) is copied from that job too.
    """
    model = _check_policy_run(run)
    _check_can_generate(model, "")
    defaults = round_defaults(run=run)
    previous: LabelingQueue | None = defaults["previous_queue"]
    prompt_set = prompt_set or defaults.get("prompt_set")
    if prompt_set is None:
        raise RunError(
            "the run's snapshot names no queue to take a prompt set from: choose one",
            field="prompt_set",
        )
    k = defaults["k"] if k is None else k
    if k < 2:
        raise RunError("a round needs k >= 2 completions per prompt to compare", field="k")
    max_new_tokens = defaults["max_new_tokens"] if max_new_tokens is None else max_new_tokens
    name = name.strip()
    if len(name) > NAME_LENGTH:
        raise RunError(f"a name has at most {NAME_LENGTH} characters", field="name")
    if name and LabelingQueue.objects.filter(name=name).exists():
        raise RunError(f"a queue named {name!r} already exists", field="name")
    name = name or next_round_queue_name(previous)

    queue_settings: dict[str, Any] = {
        f.name: f.default for f in fields(QueueSettings) if f.name in COPIED_QUEUE_SETTINGS
    }
    annotator_ids: list[int] = []
    if previous is not None:
        queue_settings = {key: getattr(previous, key) for key in COPIED_QUEUE_SETTINGS}
        annotator_ids = sorted(previous.annotators.values_list("pk", flat=True))
    sampling: dict[str, Any] = {}
    previous_job = previous.jobs.order_by("pk").first() if previous else None
    if previous_job is not None and previous_job.source == GenerationJob.Source.MODEL:
        sampling = {
            "temperature": previous_job.temperature,
            "top_p": previous_job.top_p,
            "seed": previous_job.seed,
            "stop": list(previous_job.stop or []),
            "batch_size": previous_job.batch_size,
        }
    try:
        job = generation_job_create(
            prompt_set=prompt_set,
            model=model,
            k=k,
            max_new_tokens=max_new_tokens,
            name=f"{name} (k={k})"[:NAME_LENGTH],
            user=user,
            **sampling,
        )
    except GenerationError as exc:
        field = "k" if "k must" in str(exc) else "max_new_tokens" if "max_new" in str(exc) else ""
        raise RunError(str(exc), field=field or "prompt_set") from exc
    return Round.objects.create(
        run=run,
        model=model,
        job=job,
        previous_queue=previous,
        queue_settings={"name": name, **queue_settings, "annotator_ids": annotator_ids},
        created_by=user,
    )


def round_advance(*, round: Round) -> Round:
    """Move a generating round on: failed when its job failed or was cancelled; labeling,
    with its queue, once the job succeeded; else unchanged. Idempotent, concurrency-safe."""
    if round.status != Round.Status.GENERATING:
        return round
    job = GenerationJob.objects.get(pk=round.job_id)
    if failure := _job_failure([job]):
        Round.objects.filter(pk=round.pk, status=Round.Status.GENERATING).update(
            status=Round.Status.FAILED, error=failure
        )
    elif job.status == GenerationJob.Status.SUCCEEDED:
        _round_open_queue(round, job)
    round.refresh_from_db()
    return round


def _round_settings(stored: dict[str, Any]) -> QueueSettings:
    known = {f.name for f in fields(QueueSettings)}
    values = {key: value for key, value in stored.items() if key in known}
    values["name"] = free_name(LabelingQueue, str(values.get("name") or "Next round"))
    return QueueSettings(**values)


def _round_open_queue(round: Round, job: GenerationJob) -> None:
    with transaction.atomic():
        claimed = Round.objects.filter(
            pk=round.pk, status=Round.Status.GENERATING, queue__isnull=True
        ).update(status=Round.Status.LABELING)
        if not claimed:
            return
        settings = _round_settings(round.queue_settings)
        try:
            with transaction.atomic():
                queue = labeling_queue_create(
                    jobs=[job],
                    settings=settings,
                    user=round.created_by,  # type: ignore[arg-type]
                )
                if annotators := round.queue_settings.get("annotator_ids"):
                    queue.annotators.set(annotators)
        except LabelingError as exc:
            Round.objects.filter(pk=round.pk).update(
                status=Round.Status.FAILED, error=f"the labeling queue: {exc}"
            )
            return
        Round.objects.filter(pk=round.pk).update(queue=queue)


# --- the beat task ----------------------------------------------------------------------------


def loops_advance() -> int:
    """Advance every generating evaluation and round; returns how many changed status."""
    changed = 0
    for evaluation in Evaluation.objects.filter(status=Evaluation.Status.GENERATING):
        try:
            if evaluation_advance(evaluation=evaluation).status != Evaluation.Status.GENERATING:
                changed += 1
        except Exception:  # one broken row must not stop the others
            logger.exception("advancing evaluation %s failed", evaluation.pk)
    for round in Round.objects.filter(status=Round.Status.GENERATING):
        try:
            if round_advance(round=round).status != Round.Status.GENERATING:
                changed += 1
        except Exception:
            logger.exception("advancing round %s failed", round.pk)
    return changed
