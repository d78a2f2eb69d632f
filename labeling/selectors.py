"""Reads for labeling, permission-aware: annotators see only their queues and rankings."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import markdown as md
import nh3
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils.safestring import SafeString, mark_safe

from config.roles import user_is_admin, user_is_annotator
from labeling import agreement
from labeling.models import (
    Assignment,
    Comparison,
    LabelingQueue,
    LabelingTask,
    Ranking,
    TaskCompletion,
)

AnyUser = AbstractBaseUser | AnonymousUser


def queue_list(*, user: AnyUser) -> QuerySet[LabelingQueue]:
    """Queues the user may label: active ones open to every annotator or naming them."""
    if user_is_admin(user):
        return LabelingQueue.objects.all()
    if not user_is_annotator(user):
        return LabelingQueue.objects.none()
    return (
        LabelingQueue.objects.filter(is_active=True)
        .filter(Q(annotators__isnull=True) | Q(annotators=user))
        .distinct()
    )


def queue_get(*, user: AnyUser, pk: int) -> LabelingQueue:
    queue = queue_list(user=user).filter(pk=pk).first()
    if queue is None:
        raise Http404
    return queue


def assignment_get(*, user: AnyUser, pk: int) -> Assignment:
    """An annotator's own assignment; anyone else's is a 404."""
    assignment = (
        Assignment.objects.select_related("task__queue").filter(pk=pk, annotator=user).first()
    )
    if assignment is None:
        raise Http404
    return assignment


def task_candidates(*, task: LabelingTask) -> list[Any]:
    """The task's completions in display order (A, B, ...), without model identity."""
    slots = TaskCompletion.objects.filter(task=task).select_related("completion").order_by("slot")
    return [slot.completion for slot in slots]


@dataclass
class Progress:
    done_by_me: int
    total_tasks: int
    done_total: int
    capacity: int

    @property
    def percent(self) -> int:
        return int(100 * self.done_total / self.capacity) if self.capacity else 100


def queue_progress(*, queue: LabelingQueue, user: AnyUser) -> Progress:
    total = queue.tasks.count()
    done = Assignment.objects.filter(task__queue=queue, status=Assignment.Status.SUBMITTED)
    return Progress(
        done_by_me=done.filter(annotator=user).count() if user.is_authenticated else 0,
        total_tasks=total,
        done_total=done.count(),
        capacity=total * queue.overlap,
    )


def ranking_list(*, user: AnyUser, queue: LabelingQueue | None = None) -> QuerySet[Ranking]:
    rankings = Ranking.objects.select_related("task__queue", "annotator")
    if not user_is_admin(user):
        rankings = rankings.filter(annotator=user)
    if queue is not None:
        rankings = rankings.filter(task__queue=queue)
    return rankings.order_by("-created_at")


def comparison_list(*, user: AnyUser, queue: LabelingQueue | None = None) -> QuerySet[Comparison]:
    comparisons = Comparison.objects.select_related("annotator")
    if not user_is_admin(user):
        comparisons = comparisons.filter(annotator=user)
    if queue is not None:
        comparisons = comparisons.filter(queue=queue)
    return comparisons.order_by("id")


_ALLOWED_TAGS = {
    "p",
    "br",
    "strong",
    "em",
    "code",
    "pre",
    "ul",
    "ol",
    "li",
    "blockquote",
    "h1",
    "h2",
    "h3",
    "h4",
    "a",
    "hr",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}


def render_markdown(text: str) -> SafeString:
    """Markdown through the nh3 sanitiser: scripts, handlers and odd URLs never survive."""
    html = md.markdown(text or "", extensions=["fenced_code", "tables"])
    clean = nh3.clean(html, tags=_ALLOWED_TAGS, url_schemes={"http", "https", "mailto"})
    return mark_safe(clean)


# --- the admin dashboard ------------------------------------------------------------------------


@dataclass
class AnnotatorStats:
    username: str
    done: int = 0
    median_seconds: float | None = None
    majority_agree: tuple[int, int] = (0, 0)
    gold: tuple[int, int] = (0, 0)

    @staticmethod
    def rate(pair: tuple[int, int]) -> float | None:
        return pair[0] / pair[1] if pair[1] else None

    @property
    def majority_rate(self) -> float | None:
        return self.rate(self.majority_agree)

    @property
    def gold_rate(self) -> float | None:
        return self.rate(self.gold)


@dataclass
class Dashboard:
    progress: Progress
    annotators: list[AnnotatorStats] = field(default_factory=list)
    median_seconds: float | None = None
    per_hour: list[tuple[int, int]] = field(default_factory=list)  # (unix hour, submissions)
    pairwise_agreement: float | None = None
    alpha: float | None = None
    overlapping_tasks: int = 0
    comparisons: int = 0
    flagged: int = 0


def queue_dashboard(*, queue: LabelingQueue, user: AnyUser) -> Dashboard:
    if not user_is_admin(user):
        raise Http404
    rankings = list(
        Ranking.objects.filter(task__queue=queue)
        .select_related("annotator")
        .values("task_id", "annotator__username", "order", "time_spent_ms", "created_at", "flags")
    )
    board = Dashboard(progress=queue_progress(queue=queue, user=user))
    board.comparisons = Comparison.objects.filter(queue=queue).count()
    board.flagged = sum(1 for r in rankings if r["flags"])

    units: dict[Any, dict[str, int]] = defaultdict(dict)
    per_task: dict[int, int] = defaultdict(int)
    by_annotator: dict[str, list[dict[str, Any]]] = defaultdict(list)
    hours: dict[int, int] = defaultdict(int)
    for r in rankings:
        per_task[r["task_id"]] += 1
        by_annotator[r["annotator__username"]].append(r)
        hours[int(r["created_at"].timestamp()) // 3600 * 3600] += 1
        for pair, label in agreement.preference_labels(r["order"]).items():
            units[(r["task_id"], pair)][r["annotator__username"]] = label
    board.overlapping_tasks = sum(1 for n in per_task.values() if n > 1)
    board.pairwise_agreement = agreement.pairwise_agreement(units)
    board.alpha = agreement.krippendorff_alpha_nominal(units)
    times = [r["time_spent_ms"] / 1000 for r in rankings if r["time_spent_ms"]]
    board.median_seconds = statistics.median(times) if times else None
    board.per_hour = sorted(hours.items())

    majority = agreement.agreement_with_majority(units)
    gold_tasks = dict(
        LabelingTask.objects.filter(queue=queue, is_gold=True).values_list("id", "gold_order")
    )
    gold = agreement.gold_accuracy(
        gold_tasks, [(r["annotator__username"], r["task_id"], r["order"]) for r in rankings]
    )
    for username, rows in sorted(by_annotator.items()):
        spent = [r["time_spent_ms"] / 1000 for r in rows if r["time_spent_ms"]]
        board.annotators.append(
            AnnotatorStats(
                username=username,
                done=len(rows),
                median_seconds=statistics.median(spent) if spent else None,
                majority_agree=majority.get(username, (0, 0)),
                gold=gold.get(username, (0, 0)),
            )
        )
    return board


def queue_counts(*, queues: QuerySet[LabelingQueue], user: AnyUser) -> QuerySet[LabelingQueue]:
    return queues.annotate(
        task_count=Count("tasks", distinct=True),
        mine=Count(
            "tasks__assignments",
            filter=Q(
                tasks__assignments__annotator_id=getattr(user, "pk", None),
                tasks__assignments__status=Assignment.Status.SUBMITTED,
            ),
            distinct=True,
        ),
    )
