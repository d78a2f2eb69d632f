"""Writes for blind evaluations of models (the next round after a run is ``training.rounds``).

Evaluations and rounds both start with generation jobs and go on, once every job has succeeded, with a labeling
queue built from them. That step is :func:`evaluation_advance` (``training.rounds.round_advance``):
idempotent, cheap when there is nothing to do, and safe to call from several places at
once (the beat task every 30 s and the page that shows the evaluation or round): the row
is claimed with a conditional UPDATE inside the transaction that creates the queue, so
exactly one caller creates it and a failure rolls the claim back with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from math import comb
from pathlib import Path

from django.contrib.auth.models import User
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
from training.models import Evaluation, EvaluationEntry, TrainingRun
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
_FAILED_JOB = (GenerationJob.Status.FAILED, GenerationJob.Status.CANCELLED)


def model_check_can_generate(model: PolicyModel, field: str) -> None:
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


def jobs_failure(jobs: Sequence[GenerationJob]) -> str:
    """Why the evaluation or round cannot go on, or "" while it can."""
    for job in jobs:
        if job.status in _FAILED_JOB:
            reason = f": {job.error}" if job.error else ""
            return f"generation job {job} {job.status}{reason}"
    return ""


def policy_run_check_finished(run: TrainingRun) -> PolicyModel:
    if run.kind not in TrainingRun.POLICY_KINDS:
        raise RunError(f"{run.name!r} trains a {run.get_kind_display()}, not a policy")
    if run.status != TrainingRun.Status.SUCCEEDED or run.output_model is None:
        raise RunError(f"run {run.name!r} has not finished with a model")
    return run.output_model


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
    user: User | None = None,
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
        model_check_can_generate(model, "models")
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
    if failure := jobs_failure(jobs):
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
    user: User | None = None,
) -> Evaluation:
    """ "Compare with the parent": a blind evaluation of a finished policy run's model
    against the model it started from, on a held-out ``prompt_set``."""
    model = policy_run_check_finished(run)
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
