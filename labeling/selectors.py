"""Reads for labeling, permission-aware: annotators see only their queues and rankings."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from config.roles import AnyUser, user_is_admin, user_is_annotator, user_is_researcher
from labeling import agreement, hooks
from labeling.models import (
    AI_LABELER_GROUP,
    Assignment,
    Comparison,
    LabelingQueue,
    LabelingTask,
    Ranking,
    RankingVersion,
    TaskCompletion,
)


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


def queue_list_readable(*, user: AnyUser) -> QuerySet[LabelingQueue]:
    """Queues the user may see: researchers and admins every queue (read-only for
    researchers), annotators the ones they may label."""
    if user_is_researcher(user):
        return LabelingQueue.objects.all()
    return queue_list(user=user)


def queue_get(*, user: AnyUser, pk: int) -> LabelingQueue:
    queue = queue_list(user=user).filter(pk=pk).first()
    if queue is None:
        raise Http404
    return queue


def assignment_get(*, user: User, pk: int) -> Assignment:
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
    # The AI labeler's submissions are not part of the human overlap being filled.
    done = Assignment.objects.filter(
        task__queue=queue, status=Assignment.Status.SUBMITTED, counts_toward_overlap=True
    )
    return Progress(
        done_by_me=done.filter(annotator=user).count() if user.is_authenticated else 0,
        total_tasks=total,
        done_total=done.count(),
        capacity=total * queue.overlap,
    )


def ranking_list(*, user: User, queue: LabelingQueue | None = None) -> QuerySet[Ranking]:
    rankings = Ranking.objects.select_related("task__queue", "annotator").prefetch_related(
        "task__slots"
    )
    if not user_is_admin(user):
        rankings = rankings.filter(annotator=user)
    if queue is not None:
        rankings = rankings.filter(task__queue=queue)
    return rankings.order_by("-created_at")


def comparison_list(*, user: User, queue: LabelingQueue | None = None) -> QuerySet[Comparison]:
    comparisons = Comparison.objects.select_related("annotator").prefetch_related(
        "ranking__task__slots"
    )
    if not user_is_admin(user):
        comparisons = comparisons.filter(annotator=user)
    if queue is not None:
        comparisons = comparisons.filter(queue=queue)
    return comparisons.order_by("id")


# --- the admin dashboard ------------------------------------------------------------------------


# --- what the hooks of apps above read -----------------------------------------------------


def queue_task_completions(*, queue: LabelingQueue) -> dict[int, list[int]]:
    """Each task of the queue (by position) with its completion ids in display order."""
    tasks: dict[int, list[int]] = {}
    slots = (
        TaskCompletion.objects.filter(task__queue=queue)
        .order_by("task__position", "slot")
        .values_list("task_id", "completion_id")
    )
    for task_id, completion_id in slots.iterator(chunk_size=5000):
        tasks.setdefault(task_id, []).append(completion_id)
    return tasks


def ai_labeler_names() -> set[str]:
    """Usernames of every AI labeler (the ai-labeler group's pseudo-users)."""
    user_model = get_user_model()
    return set(
        user_model.objects.filter(groups__name=AI_LABELER_GROUP).values_list(
            user_model.USERNAME_FIELD, flat=True
        )
    )


@dataclass
class AnnotatorStats:
    username: str
    done: int = 0
    median_seconds: float | None = None
    majority_agree: tuple[int, int] = (0, 0)
    gold: tuple[int, int] = (0, 0)
    # The AI labeler: its majority agreement is against the human annotators only.
    is_ai: bool = False
    # Non-tie comparisons whose chosen completion the queue's reward model scores higher.
    reward_agree: tuple[int, int] = (0, 0)

    @staticmethod
    def rate(pair: tuple[int, int]) -> float | None:
        return pair[0] / pair[1] if pair[1] else None

    @property
    def majority_rate(self) -> float | None:
        return self.rate(self.majority_agree)

    @property
    def gold_rate(self) -> float | None:
        return self.rate(self.gold)

    @property
    def reward_rate(self) -> float | None:
        return self.rate(self.reward_agree)


@dataclass
class RewardAgreement:
    """How the queue's reward model sides with the annotators (admins only)."""

    run_name: str
    # Over the human annotators' non-tie comparisons.
    humans: tuple[int, int] = (0, 0)
    # Each AI labeler against the human majority: (username, (agreeing, counted)).
    ai_vs_humans: list[tuple[str, tuple[int, int]]] = field(default_factory=list)

    @property
    def humans_rate(self) -> float | None:
        return AnnotatorStats.rate(self.humans)


@dataclass
class Dashboard:
    progress: Progress
    annotators: list[AnnotatorStats] = field(default_factory=list)
    median_seconds: float | None = None
    per_hour: list[tuple[int, int]] = field(default_factory=list)  # (unix hour, submissions)
    # Over the units of the labels: pairs of answers, or single answers' good/bad verdicts.
    pairwise_agreement: float | None = None
    alpha: float | None = None
    # Krippendorff's ordinal alpha on the 1-7 scores, per answer (None: nothing to pair).
    score_alpha: float | None = None
    overlapping_tasks: int = 0
    comparisons: int = 0
    flagged: int = 0
    # Set when the queue has a reward run that has scored its completions.
    reward: RewardAgreement | None = None
    # Each human annotator day by day (UTC), in order.
    days: list[AnnotatorDay] = field(default_factory=list)


HOUR = 3600
# Beyond this many hours between the first and last label, the gaps are not filled in.
MAX_FILLED_HOURS = 24 * 62


def hourly_series(counts: dict[int, int]) -> list[tuple[int, int]]:
    """Labels per hour as a chart draws them: every hour from the first to the last (zeros
    in the gaps), plus an empty hour on each side.

    A bar chart of one hour alone has no span to scale its time axis by, and bars at the
    edges are cut in half; the empty hours around the data give it both.
    """
    if not counts:
        return []
    first, last = min(counts), max(counts)
    if (last - first) // HOUR > MAX_FILLED_HOURS:
        hours = sorted(counts)
    else:
        hours = list(range(first, last + HOUR, HOUR))
    hours = [hours[0] - HOUR, *hours, hours[-1] + HOUR]
    return [(hour, counts.get(hour, 0)) for hour in hours]


def queue_dashboard(*, queue: LabelingQueue, user: AnyUser) -> Dashboard:
    if not user_is_admin(user):
        raise Http404
    rankings = list(
        Ranking.objects.filter(task__queue=queue)
        .select_related("annotator")
        .values(
            "task_id",
            "annotator__username",
            "order",
            "verdict",
            "scores",
            "time_spent_ms",
            "created_at",
            "flags",
        )
    )
    board = Dashboard(progress=queue_progress(queue=queue, user=user))
    board.comparisons = Comparison.objects.filter(queue=queue).count()
    board.flagged = sum(1 for r in rankings if r["flags"])
    ai_names = ai_labeler_names() & {r["annotator__username"] for r in rankings}

    # Human agreement, throughput and overlap leave the AI labeler out; it is compared
    # with the humans on its own below.
    units: dict[Any, dict[str, int]] = defaultdict(dict)
    score_units: dict[Any, dict[str, int]] = defaultdict(dict)
    ai_units: dict[str, dict[Any, int]] = defaultdict(dict)
    per_task: dict[int, int] = defaultdict(int)
    by_annotator: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    hours: dict[int, int] = defaultdict(int)
    day_of: dict[tuple[Any, str], date] = {}
    for r in rankings:
        who = r["annotator__username"]
        by_annotator[who].append(r)
        pair_labels = agreement.label_units(r["order"], r["verdict"]).items()
        if who in ai_names:
            for pair, label in pair_labels:
                ai_units[who][(r["task_id"], pair)] = label
            continue
        per_task[r["task_id"]] += 1
        hours[int(r["created_at"].timestamp()) // 3600 * 3600] += 1
        day = r["created_at"].astimezone(UTC).date()
        for pair, label in pair_labels:
            units[(r["task_id"], pair)][who] = label
            day_of[((r["task_id"], pair), who)] = day
        for completion_id, score in (r["scores"] or {}).items():
            score_units[(r["task_id"], completion_id)][who] = score
    board.overlapping_tasks = sum(1 for n in per_task.values() if n > 1)
    board.pairwise_agreement = agreement.pairwise_agreement(units)
    board.alpha = agreement.krippendorff_alpha_nominal(units)
    board.score_alpha = agreement.krippendorff_alpha_ordinal(score_units)
    times = [
        r["time_spent_ms"] / 1000
        for r in rankings
        if r["time_spent_ms"] and r["annotator__username"] not in ai_names
    ]
    board.median_seconds = statistics.median(times) if times else None
    board.per_hour = hourly_series(hours)
    board.days = _annotator_days(
        [r for r in rankings if r["annotator__username"] not in ai_names], units, day_of
    )

    majority = agreement.agreement_with_majority(units)
    majority.update(_ai_against_humans(units, ai_units))
    board.reward, by_reward = _reward_agreement(queue, ai_names)
    if board.reward is not None:
        board.reward.ai_vs_humans = [(name, majority[name]) for name in sorted(ai_units)]
    gold_tasks = {
        task_id: order
        for task_id, order in LabelingTask.objects.filter(queue=queue, is_gold=True).values_list(
            "id", "gold_order"
        )
        if order is not None  # a gold task always has its order (labeling_task_set_gold)
    }
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
                is_ai=username in ai_names,
                reward_agree=by_reward.get(username, (0, 0)),
            )
        )
    return board


def _ai_against_humans(
    units: Mapping[Any, Mapping[str, int]], ai_units: Mapping[str, Mapping[Any, int]]
) -> dict[str, tuple[int, int]]:
    """Each AI labeler's (agreeing, counted) against the strict majority of the humans on
    the units they labeled too (the AIs never count in each other's majority)."""
    result: dict[str, tuple[int, int]] = {}
    for name, ai_labels in ai_units.items():
        against_humans = {
            unit: {**units[unit], name: label} for unit, label in ai_labels.items() if unit in units
        }
        result[name] = agreement.agreement_with_majority(against_humans).get(name, (0, 0))
    return result


def queue_ai_agreement(*, queue: LabelingQueue) -> dict[str, tuple[int, int]]:
    """Each AI labeler of the queue (by username) against the human majority, as the
    dashboard counts it: (agreeing, counted) over the units where the humans have one."""
    ai_names = ai_labeler_names()
    units: dict[Any, dict[str, int]] = defaultdict(dict)
    ai_units: dict[str, dict[Any, int]] = defaultdict(dict)
    rankings = Ranking.objects.filter(task__queue=queue).values_list(
        "task_id", "annotator__username", "order", "verdict"
    )
    for task_id, who, order, verdict in rankings.iterator(chunk_size=5000):
        for pair, label in agreement.label_units(order, verdict).items():
            if who in ai_names:
                ai_units[who][(task_id, pair)] = label
            else:
                units[(task_id, pair)][who] = label
    return _ai_against_humans(units, ai_units)


def _reward_agreement(
    queue: LabelingQueue, ai_names: set[str]
) -> tuple[RewardAgreement | None, dict[Any, tuple[int, int]]]:
    """The queue's reference scores (a reward model's, through ``hooks``) against its
    annotators: the summary (None without scores) and (agreeing, counted) per annotator,
    over non-tie comparisons whose two completions both have a score."""
    reference = hooks.queue_reference_scores(queue=queue)
    if reference is None or not reference.scores:
        return None, {}
    rewards = reference.scores
    comparisons = Comparison.objects.filter(queue=queue, is_tie=False).values_list(
        "annotator__username", "chosen_id", "rejected_id"
    )
    per_annotator = agreement.reward_agreement(
        (who, rewards[chosen], rewards[rejected])
        for who, chosen, rejected in comparisons.iterator(chunk_size=5000)
        if chosen in rewards and rejected in rewards
    )
    humans = [pair for who, pair in per_annotator.items() if who not in ai_names]
    summary = RewardAgreement(
        run_name=reference.name,
        humans=(sum(a for a, _ in humans), sum(n for _, n in humans)),
    )
    return summary, per_annotator


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


def label_last_given(*, task: LabelingTask, user: AnyUser) -> RankingVersion | None:
    """The annotator's last label on ``task`` when it has been taken back (its latest
    version is an undo), else None: a task shown again keeps what they had written."""
    versions = RankingVersion.objects.filter(task=task, annotator_id=user.pk).order_by("-version")
    latest = versions.first()
    if latest is None or latest.action != RankingVersion.Action.UNDONE:
        return None
    return versions.exclude(action=RankingVersion.Action.UNDONE).first()


@dataclass(frozen=True)
class AnnotatorDay:
    """One annotator's figures on one day (UTC) of a queue: how much, how fast, how well."""

    username: str
    day: date
    labels: int
    active_hours: int
    median_seconds: float | None
    majority_agree: tuple[int, int]

    @property
    def labels_per_hour(self) -> float:
        """Labels per hour in which they labeled at all (breaks don't count)."""
        return self.labels / self.active_hours if self.active_hours else 0.0

    @property
    def majority_rate(self) -> float | None:
        return AnnotatorStats.rate(self.majority_agree)


def _annotator_days(
    rows: Sequence[Mapping[str, Any]],
    units: Mapping[Any, Mapping[str, int]],
    day_of: Mapping[tuple[Any, str], date],
) -> list[AnnotatorDay]:
    """Each human annotator's day-by-day figures from their labels (``rows``): labels,
    labels per active hour, median time per task, and agreement with the majority of the
    other annotators on the labels of that day (``units``, each label's day in ``day_of``)."""
    agree = agreement.agreement_with_majority_by(units, day_of)
    days: dict[tuple[str, date], list[tuple[int, Any]]] = defaultdict(list)
    for r in rows:
        day = r["created_at"].astimezone(UTC).date()
        days[(r["annotator__username"], day)].append((r["time_spent_ms"], r["created_at"]))
    result = []
    for (who, day), labels in sorted(days.items()):
        times = [ms / 1000 for ms, _ in labels if ms]
        hours = {at.astimezone(UTC).hour for _, at in labels}
        result.append(
            AnnotatorDay(
                username=who,
                day=day,
                labels=len(labels),
                active_hours=len(hours),
                median_seconds=statistics.median(times) if times else None,
                majority_agree=agree.get((who, day), (0, 0)),  # type: ignore[arg-type]
            )
        )
    return result
