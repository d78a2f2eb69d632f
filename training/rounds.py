"""Writes for the next round after a policy run: sample from its model, then label.

A round starts with a generation job and goes on, once the job has succeeded, with a
labeling queue copying the previous queue's settings; :func:`round_advance` takes that step
as :func:`training.evaluations.evaluation_advance` does for an evaluation (idempotent, the
row claimed with a conditional UPDATE). :func:`loops_advance`, the beat task's service,
advances both.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from config.naming import free_name
from generation.models import GenerationJob, PromptSet
from generation.services import (
    GenerationError,
    generation_job_create,
)
from labeling.models import LabelingQueue
from labeling.services import LabelingError, QueueSettings, labeling_queue_create
from training.evaluations import (
    NAME_LENGTH,
    evaluation_advance,
    jobs_failure,
    model_check_can_generate,
    policy_run_check_finished,
)
from training.models import Evaluation, Round, TrainingRun
from training.runs import RunError

logger = logging.getLogger(__name__)

# The settings of the previous queue a next round copies (besides who may label it).
COPIED_QUEUE_SETTINGS = (
    "mode",
    "ask_scores",
    "overlap",
    "pairs_per_prompt",
    "guidelines",
    "lease_seconds",
)


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


@transaction.atomic
def round_create(
    *,
    run: TrainingRun,
    prompt_set: PromptSet | None = None,
    k: int | None = None,
    max_new_tokens: int | None = None,
    name: str = "",
    user: User | None = None,
) -> Round:
    """The next round after a finished policy run: a job sampling ``k`` completions per
    prompt from ``run.output_model`` and, once it has finished, a labeling queue named
    ``name`` with the previous queue's settings (see :func:`run_previous_queue`).

    ``prompt_set``, ``k`` and ``max_new_tokens`` default to the previous queue's first job's;
    sampling (temperature, top_p, seed, stop) is copied from that job too.
    """
    model = policy_run_check_finished(run)
    model_check_can_generate(model, "")
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
    if failure := jobs_failure([job]):
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
