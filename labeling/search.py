"""Finding labels and prompts: the search page's reads, and one prompt's whole record.

Labels are the current labels (``Ranking``: the latest version of each annotator's label on
a task). Text matches the prompt, any answer of the task, or the annotator's comment. Score
and agreement filters are computed in Python over the rows the database filters leave, on
two small columns, so they behave the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from generation.models import Completion, Prompt
from labeling import agreement
from labeling.models import (
    DatasetSnapshot,
    LabelingQueue,
    LabelingTask,
    Ranking,
    SnapshotRow,
    TaskCompletion,
)


@dataclass(frozen=True, kw_only=True)
class LabelFilter:
    """What the search page asks for; every field is optional."""

    text: str = ""
    queue: LabelingQueue | None = None
    annotator: str = ""
    flagged: bool | None = None
    # Single answers only: "good" or "bad".
    verdict: str = ""
    min_score: int | None = None
    max_score: int | None = None
    min_agreement: float | None = None
    max_agreement: float | None = None
    since: date | None = None
    until: date | None = None


def label_search(*, spec: LabelFilter) -> QuerySet[Ranking]:
    """Current labels matching ``spec``, newest first."""
    labels = Ranking.objects.select_related(
        "task__prompt", "task__queue", "annotator"
    ).prefetch_related("task__slots")
    if spec.text:
        in_answers = TaskCompletion.objects.filter(
            task_id=OuterRef("task_id"), completion__text__icontains=spec.text
        )
        labels = labels.filter(
            Q(task__prompt__text__icontains=spec.text)
            | Q(comment__icontains=spec.text)
            | Exists(in_answers)
        )
    if spec.queue is not None:
        labels = labels.filter(task__queue=spec.queue)
    if spec.annotator:
        labels = labels.filter(annotator__username=spec.annotator)
    if spec.flagged is True:
        labels = labels.exclude(flags=[])
    elif spec.flagged is False:
        labels = labels.filter(flags=[])
    if spec.verdict:
        labels = labels.filter(verdict=spec.verdict)
    if spec.since is not None:
        labels = labels.filter(created_at__date__gte=spec.since)
    if spec.until is not None:
        labels = labels.filter(created_at__date__lte=spec.until)
    if spec.min_score is not None or spec.max_score is not None:
        labels = labels.filter(pk__in=_ids_with_scores(labels, spec.min_score, spec.max_score))
    if spec.min_agreement is not None or spec.max_agreement is not None:
        agreeing = tasks_agreement(task_ids=labels.values_list("task_id", flat=True))
        low = spec.min_agreement if spec.min_agreement is not None else 0.0
        high = spec.max_agreement if spec.max_agreement is not None else 1.0
        labels = labels.filter(
            task_id__in=[t for t, value in agreeing.items() if low <= value <= high]
        )
    return labels.order_by("-created_at", "-pk")


def _ids_with_scores(labels: QuerySet[Ranking], low: int | None, high: int | None) -> list[int]:
    """Labels that gave at least one answer a score within [low, high]."""
    ids = []
    for pk, scores in labels.values_list("pk", "scores"):
        values = [v for v in (scores or {}).values() if isinstance(v, int | float)]
        if any((low is None or v >= low) and (high is None or v <= high) for v in values):
            ids.append(pk)
    return ids


def tasks_agreement(*, task_ids: Any) -> dict[int, float]:
    """Each task's pairwise agreement among its annotators' current labels (on the pairs of
    answers, or a single answer's good/bad verdict; tasks labeled by two or more people
    only)."""
    units: dict[int, dict[Any, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for task_id, annotator_id, order, verdict in Ranking.objects.filter(
        task_id__in=task_ids
    ).values_list("task_id", "annotator_id", "order", "verdict"):
        for pair, label in agreement.label_units(order, verdict).items():
            units[task_id][pair][annotator_id] = label
    result = {}
    for task_id, task_units in units.items():
        value = agreement.pairwise_agreement(task_units)
        if value is not None:
            result[task_id] = value
    return result


def prompt_search(*, text: str) -> QuerySet[Prompt]:
    """Prompts whose text, or any of whose answers, contains ``text``."""
    prompts = Prompt.objects.select_related("prompt_set")
    if text:
        prompts = prompts.filter(
            Q(text__icontains=text)
            | Exists(Completion.objects.filter(prompt=OuterRef("pk"), text__icontains=text))
        )
    return prompts.order_by("prompt_set__name", "position")


@dataclass
class TaskRecord:
    """One labeling task of a prompt, with its answers lettered as annotators saw them."""

    task: LabelingTask
    letters: dict[int, str]
    labels: list[Ranking] = field(default_factory=list)
    agreement: float | None = None


@dataclass
class PromptRecord:
    prompt: Prompt
    completions: list[Completion]
    tasks: list[TaskRecord]
    snapshots: list[DatasetSnapshot]


def prompt_record(*, prompt: Prompt) -> PromptRecord:
    """A prompt with its answers, every task's current labels and the snapshots holding it."""
    completions = list(
        Completion.objects.filter(prompt=prompt)
        .select_related("job")
        .order_by("job_id", "sample_index")
    )
    tasks = list(
        LabelingTask.objects.filter(prompt=prompt)
        .select_related("queue")
        .prefetch_related("slots")
        .order_by("queue_id", "pk")
    )
    labels = defaultdict(list)
    for label in (
        Ranking.objects.filter(task__in=tasks).select_related("annotator").order_by("created_at")
    ):
        labels[label.task_id].append(label)
    agreeing = tasks_agreement(task_ids=[t.pk for t in tasks])
    records = [
        TaskRecord(
            task=task,
            letters=task_letters(task),
            labels=labels[task.pk],
            agreement=agreeing.get(task.pk),
        )
        for task in tasks
    ]
    snapshots = list(
        DatasetSnapshot.objects.filter(
            pk__in=SnapshotRow.objects.filter(prompt=prompt).values("snapshot_id")
        ).order_by("-created_at")
    )
    return PromptRecord(prompt=prompt, completions=completions, tasks=records, snapshots=snapshots)


def order_in_letters(order: list[list[int]], letters: dict[int, str]) -> str:
    """A best-first ranking with ties as annotators think of it: "B > A = C"."""
    return " > ".join(" = ".join(letters.get(c, "?") for c in group) for group in order)


def task_letters(task: LabelingTask) -> dict[int, str]:
    """completion id -> the letter annotators saw it under (A is slot 0), from the task's
    prefetched slots."""
    return {slot.completion_id: chr(ord("A") + slot.slot) for slot in task.slots.all()}


@dataclass(frozen=True)
class LabelView:
    """A label as pages show it: its ranking (a single answer's verdict: "A good") and
    scores by the letters annotators saw."""

    label: Ranking
    order: str
    scores: dict[str, Any]


def label_view(label: Ranking, letters: dict[int, str] | None = None) -> LabelView:
    letters = letters if letters is not None else task_letters(label.task)
    return LabelView(
        label=label,
        order=(
            f"{order_in_letters(label.order, letters)} {label.verdict}"
            if label.verdict
            else order_in_letters(label.order, letters)
        ),
        scores={letters.get(int(c), "?"): s for c, s in (label.scores or {}).items()},
    )
