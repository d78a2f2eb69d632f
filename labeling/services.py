"""Writes for labeling: queues and their tasks, claims (leases), submissions, undo."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.roles import user_is_admin
from generation.models import Completion, GenerationJob
from labeling.models import (
    Assignment,
    Comparison,
    Demonstration,
    LabelingQueue,
    LabelingTask,
    Ranking,
    RankingVersion,
    TaskCompletion,
    Verdict,
)

FLAGS = ("unsafe", "broken", "off-topic")
SCORE_RANGE = (1, 7)
# The labeling page and the API take the same lengths.
COMMENT_MAX_LENGTH = 5000
DEMONSTRATION_MAX_LENGTH = 20000
MAX_CANDIDATES = 16


class LabelingError(ValueError):
    """A request that cannot be carried out; the message is shown to the annotator as is.

    ``field`` names the submitted field at fault, when one is (the API reports it).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LeaseExpired(LabelingError):
    pass


# --- queues -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSettings:
    name: str
    mode: str = LabelingQueue.Mode.PAIRWISE
    ask_scores: bool = False
    overlap: int = 1
    pairs_per_prompt: int = 1
    guidelines: str = ""
    lease_seconds: int = 900
    seed: int = 0


def _groups_by_prompt(jobs: Sequence[GenerationJob]) -> list[list[Completion]]:
    """Completions of the jobs grouped by exact prompt content, so several models' answers to
    the same prompt land in one task (a blind comparison), and never answers to prompts that
    differ by a byte."""
    groups: dict[str, list[Completion]] = defaultdict(list)
    order: list[str] = []
    completions = (
        Completion.objects.filter(job__in=jobs)
        .select_related("prompt")
        .order_by("prompt__prompt_set_id", "prompt__position", "job_id", "sample_index")
    )
    for completion in completions:
        key = completion.prompt.exact_hash
        if key not in groups:
            order.append(key)
        groups[key].append(completion)
    return [groups[key] for key in order]


def _pick_pairs(
    group: list[Completion], count: int, rng: random.Random
) -> list[tuple[Completion, Completion]]:
    pairs = list(itertools.combinations(group, 2))
    # Prefer pairs from different jobs (models) when the queue mixes several.
    cross = [p for p in pairs if p[0].job_id != p[1].job_id]
    pool = cross or pairs
    rng.shuffle(pool)
    return pool[:count]


@transaction.atomic
def labeling_queue_create(
    *, jobs: Sequence[GenerationJob], settings: QueueSettings, user: User | None = None
) -> LabelingQueue:
    """Build a queue and all its tasks from finished generation jobs.

    Ranking mode makes one task per prompt with all its completions; pairwise mode draws
    ``pairs_per_prompt`` pairs per prompt; single mode makes one task per completion (one
    answer to judge good or bad). Display order is shuffled (seeded) so that
    position says nothing about the model or the sample index.
    """
    if not jobs:
        raise LabelingError("choose at least one generation job")
    unfinished = [j for j in jobs if j.status != GenerationJob.Status.SUCCEEDED]
    if unfinished:
        raise LabelingError(f"job {unfinished[0]} has not finished ({unfinished[0].status})")
    if settings.mode not in LabelingQueue.Mode.values:
        raise LabelingError(f"unknown mode {settings.mode!r}")
    if not 1 <= settings.overlap <= 20:
        raise LabelingError("overlap must be between 1 and 20")
    if not settings.name.strip():
        raise LabelingError("the queue needs a name")
    if LabelingQueue.objects.filter(name=settings.name.strip()).exists():
        raise LabelingError(f"a queue named {settings.name!r} already exists")

    rng = random.Random(settings.seed)
    candidates: list[list[Completion]] = []
    single = settings.mode == LabelingQueue.Mode.SINGLE
    for group in _groups_by_prompt(jobs):
        if single:
            candidates.extend([completion] for completion in group)
            continue
        if len(group) < 2:
            continue
        if settings.mode == LabelingQueue.Mode.RANKING:
            chosen = group[:MAX_CANDIDATES]
            candidates.append(rng.sample(chosen, len(chosen)))
        else:
            for a, b in _pick_pairs(group, max(1, settings.pairs_per_prompt), rng):
                candidates.append([a, b] if rng.random() < 0.5 else [b, a])
    if not candidates:
        if single:
            raise LabelingError("the jobs have no completions")
        raise LabelingError("the jobs have no prompt with at least two completions")
    rng.shuffle(candidates)

    queue = LabelingQueue.objects.create(
        name=settings.name.strip(),
        mode=settings.mode,
        ask_scores=settings.ask_scores,
        overlap=settings.overlap,
        pairs_per_prompt=settings.pairs_per_prompt,
        guidelines=settings.guidelines,
        lease_seconds=settings.lease_seconds,
        seed=settings.seed,
        created_by=user,
    )
    queue.jobs.set(jobs)
    tasks = LabelingTask.objects.bulk_create(
        [
            LabelingTask(queue=queue, prompt=group[0].prompt, position=i)
            for i, group in enumerate(candidates)
        ],
        batch_size=1000,
    )
    TaskCompletion.objects.bulk_create(
        [
            TaskCompletion(task=task, completion=completion, slot=slot)
            for task, group in zip(tasks, candidates, strict=True)
            for slot, completion in enumerate(group)
        ],
        batch_size=2000,
    )
    return queue


@transaction.atomic
def labeling_task_set_gold(*, task: LabelingTask, order: Any) -> LabelingTask:
    """Mark a task as gold with its known best-first order (tie groups of completion ids)."""
    task.gold_order = _validate_order(task, order)
    task.is_gold = True
    task.save(update_fields=["gold_order", "is_gold"])
    return task


# --- claims ---------------------------------------------------------------------------------------


def _in_use(now: Any) -> Q:
    """Assignments that hold a slot: submitted work and unexpired claims (skips free theirs).

    The AI labeler's assignments never hold one (``counts_toward_overlap`` is False).
    """
    return Q(counts_toward_overlap=True) & (
        Q(status=Assignment.Status.SUBMITTED)
        | Q(status=Assignment.Status.ACTIVE, expires_at__gt=now)
    )


def _taken(task_id: int, now: Any) -> int:
    return Assignment.objects.filter(task_id=task_id).filter(_in_use(now)).count()


def _claim_order(queue: LabelingQueue) -> list[Any]:
    """The open tasks' order: the (queue, position) or (queue, priority, position) index."""
    if queue.task_order == LabelingQueue.TaskOrder.UNCERTAINTY:
        return [F("priority").asc(nulls_last=True), "position"]
    return ["position"]


MAX_CLAIM_ATTEMPTS = 50
# Rows locked per claim attempt: few, since every locked row is one that submitters and
# other claimers must wait for or skip.
CLAIM_BATCH = 3


@transaction.atomic
def queue_annotators_set(*, queue: LabelingQueue, annotators: Sequence[User]) -> None:
    """Restrict ``queue`` to ``annotators``; an empty list opens it to every annotator.
    Claims already made stay valid until they are submitted or their lease ends."""
    queue.annotators.set(annotators)


def queue_may_label(*, queue: LabelingQueue, user: User) -> bool:
    """Admins label any queue; annotators an open one, or a restricted one that names them."""
    if user_is_admin(user):
        return True
    restricted = queue.annotators.exists()
    return not restricted or queue.annotators.filter(pk=user.pk).exists()


@transaction.atomic
def task_claim_next(*, queue: LabelingQueue, user: User) -> Assignment | None:
    """The annotator's current claim in ``queue``, or a new one on the next open task.

    Concurrency-safe: open tasks are locked with ``FOR UPDATE SKIP LOCKED`` and their
    slots re-counted under the lock (a fresh statement sees every committed claim), so no
    task gets more annotators than the queue's overlap and nobody gets a task twice. When
    every open task is momentarily locked by other claimers, it waits for the first one
    instead of reporting the queue as finished.

    Tasks come by position, or with ``task_order="uncertainty"`` by priority (the reward
    model's smallest gap between the task's completions; unscored tasks last), then position.
    """
    if not queue_may_label(queue=queue, user=user):
        raise LabelingError("this queue is open only to the annotators an admin chose")
    now = timezone.now()
    current = (
        Assignment.objects.filter(
            task__queue=queue, annotator=user, status=Assignment.Status.ACTIVE, expires_at__gt=now
        )
        .select_related("task")
        .order_by("claimed_at")
        .first()
    )
    if current is not None:
        return current
    seen = Assignment.objects.filter(annotator=user).values("task_id")
    taken = (
        Assignment.objects.filter(task=OuterRef("pk"))
        .filter(_in_use(now))
        .values("task")
        .annotate(n=Count("id"))
        .values("n")
    )
    open_tasks = (
        LabelingTask.objects.filter(queue=queue, submitted_count__lt=queue.overlap)
        .exclude(id__in=seen)
        .annotate(taken=Coalesce(Subquery(taken), 0))
        .filter(taken__lt=queue.overlap)
        .order_by(*_claim_order(queue))
    )
    for _ in range(MAX_CLAIM_ATTEMPTS):
        candidates = list(
            open_tasks.select_for_update(skip_locked=True, of=("self",))[:CLAIM_BATCH]
        )
        if not candidates:
            # Every open task is being claimed right now, or none is left: wait for one.
            candidates = list(open_tasks.select_for_update(of=("self",))[:1])
            if not candidates:
                return None
        for task in candidates:
            if _taken(task.pk, now) < queue.overlap:
                return Assignment.objects.create(
                    task=task,
                    annotator=user,
                    claimed_at=now,
                    expires_at=now + timedelta(seconds=queue.lease_seconds),
                )
    return None


@transaction.atomic
def task_skip(*, assignment: Assignment) -> Assignment:
    assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if assignment.status != Assignment.Status.ACTIVE:
        raise LabelingError("only a task you are working on can be skipped")
    assignment.status = Assignment.Status.SKIPPED
    assignment.finished_at = timezone.now()
    assignment.save(update_fields=["status", "finished_at"])
    return assignment


# --- hooks for the apps above: task order, extra labelers ------------------------------------------


PRIORITY_BATCH = 1000


@transaction.atomic
def labeling_queue_task_order_set(
    *, queue: LabelingQueue, task_order: str, clear_priorities: bool = False
) -> LabelingQueue:
    """Serve the queue's tasks by ``task_order`` (position, or priority first); with
    ``clear_priorities`` every task's priority goes back to null (unscored) first."""
    if task_order not in LabelingQueue.TaskOrder.values:
        raise LabelingError(f"unknown task order {task_order!r}")
    if clear_priorities:
        LabelingTask.objects.filter(queue=queue).update(priority=None)
    queue.task_order = task_order
    queue.save(update_fields=["task_order"])
    return queue


@transaction.atomic
def task_priorities_set(*, queue: LabelingQueue, priorities: Mapping[int, float | None]) -> int:
    """Set the priority of the queue's tasks (task id -> priority; lower is served first
    under ``task_order="uncertainty"``, null last). Returns how many got a priority."""
    of_queue = set(LabelingTask.objects.filter(queue=queue).values_list("id", flat=True))
    tasks = [
        LabelingTask(pk=task_id, priority=priority)
        for task_id, priority in priorities.items()
        if task_id in of_queue
    ]
    LabelingTask.objects.bulk_update(tasks, ["priority"], batch_size=PRIORITY_BATCH)
    return sum(1 for t in tasks if t.priority is not None)


def assignment_uncounted_open(*, task_id: int, user: User, lease_seconds: int) -> Assignment:
    """An assignment of the task to an extra labeler (an AI) that never takes one of the
    task's overlap slots: the existing one (its lease renewed while active) or a new one.
    The labeler submits on it with ``ranking_submit``, as a human would."""
    now = timezone.now()
    assignment, created = Assignment.objects.get_or_create(
        task_id=task_id,
        annotator=user,
        defaults={
            "claimed_at": now,
            "expires_at": now + timedelta(seconds=lease_seconds),
            "counts_toward_overlap": False,
        },
    )
    if not created and assignment.status == Assignment.Status.ACTIVE:
        Assignment.objects.filter(pk=assignment.pk).update(
            expires_at=now + timedelta(seconds=lease_seconds)
        )
    return assignment


# --- submissions ----------------------------------------------------------------------------------


def _validate_order(task: LabelingTask, order: Any) -> list[list[int]]:
    ids = set(TaskCompletion.objects.filter(task=task).values_list("completion_id", flat=True))
    if not isinstance(order, list) or not order:
        raise LabelingError("the ranking is empty")
    groups: list[list[int]] = []
    seen: set[int] = set()
    for group in order:
        if not isinstance(group, list) or not group:
            raise LabelingError("each rank must hold at least one completion")
        clean = []
        for item in group:
            if isinstance(item, bool) or not isinstance(item, int):
                raise LabelingError(f"{item!r} is not a completion id")
            if item not in ids:
                raise LabelingError(f"completion {item} is not part of this task")
            if item in seen:
                raise LabelingError(f"completion {item} is ranked twice")
            seen.add(item)
            clean.append(item)
        groups.append(sorted(clean))
    if seen != ids:
        raise LabelingError("rank every completion of the task")
    return groups


def task_aliases(*, task: LabelingTask) -> dict[int, str]:
    """completion id -> the letter annotators see (A, B, ...), by display slot."""
    slots = TaskCompletion.objects.filter(task=task).order_by("slot")
    return {
        completion_id: ALIASES[i]
        for i, completion_id in enumerate(slots.values_list("completion_id", flat=True))
    }


ALIASES = "ABCDEFGHIJKLMNOP"


def _validate_scores(
    queue: LabelingQueue, task: LabelingTask, scores: Any, order: list[list[int]]
) -> dict[str, int]:
    """Scores keyed by completion id, each in range, and agreeing with the ranking: a
    better-ranked answer never has a lower score (the error names both answers)."""
    if not scores:
        return {}
    if not queue.ask_scores:
        raise LabelingError("this queue does not ask for scores", field="scores")
    ids = set(TaskCompletion.objects.filter(task=task).values_list("completion_id", flat=True))
    clean: dict[str, int] = {}
    low, high = SCORE_RANGE
    for key, value in dict(scores).items():
        try:
            completion_id = int(key)
        except (TypeError, ValueError):
            raise LabelingError(f"{key!r} is not a completion id") from None
        if completion_id not in ids:
            raise LabelingError(f"completion {completion_id} is not part of this task")
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise LabelingError(f"scores run from {low} to {high}", field="scores")
        clean[str(completion_id)] = value
    aliases = task_aliases(task=task)
    for i, better in enumerate(order):
        for worse in order[i + 1 :]:
            for a in better:
                for b in worse:
                    sa, sb = clean.get(str(a)), clean.get(str(b))
                    if sa is not None and sb is not None and sa < sb:
                        raise LabelingError(
                            f"{aliases[a]} is ranked above {aliases[b]} but scored lower "
                            f"({sa} < {sb}): make the scores agree with the ranking"
                        )
    return clean


def comparison_expand_ranking(ranking: Ranking) -> list[Comparison]:
    """The k-choose-2 pairs of a ranking: for ranks i < j, chosen from i, rejected from j.

    ``margin`` and ``rank_gap`` are the rank steps j - i (0 on a tie): one unit for every
    pair, whether or not it was scored. ``score_diff`` is score[chosen] - score[rejected]
    when both were scored (never negative on a strict pair, since scores agree with the
    ranking). Pairs in one tie group are ties (lower id first). ``created_at`` is the
    label's first-submitted time. Unsaved rows.
    """
    scores = {int(k): v for k, v in (ranking.scores or {}).items()}
    task = ranking.task
    rows: list[Comparison] = []

    def row(chosen: int, rejected: int, *, gap: int) -> Comparison:
        diff = (
            float(scores[chosen] - scores[rejected])
            if chosen in scores and rejected in scores
            else None
        )
        return Comparison(
            ranking=ranking,
            queue_id=task.queue_id,
            prompt_id=task.prompt_id,
            chosen_id=chosen,
            rejected_id=rejected,
            is_tie=gap == 0,
            margin=float(gap),
            rank_gap=float(gap),
            score_diff=diff,
            both_bad=ranking.both_bad,
            annotator_id=ranking.annotator_id,
            created_at=ranking.created_at,
        )

    for i, group in enumerate(ranking.order):
        for a, b in itertools.combinations(sorted(group), 2):
            rows.append(row(a, b, gap=0))
        for j in range(i + 1, len(ranking.order)):
            for a in group:
                for b in ranking.order[j]:
                    rows.append(row(a, b, gap=j - i))
    return rows


@dataclass(frozen=True)
class Submission:
    order: list[list[int]]
    scores: dict[str, int] | None = None
    both_bad: bool = False
    comment: str = ""
    flags: tuple[str, ...] = ()
    time_spent_ms: int = 0
    demonstration: str = ""
    # Single-answer queues: "good" or "bad" (``order`` is then the one answer, [[id]]).
    verdict: str = ""


def _validate_verdict(queue: LabelingQueue, verdict: Any, both_bad: bool) -> str:
    """The verdict a single-answer queue needs, and no verdict anywhere else."""
    if queue.mode != LabelingQueue.Mode.SINGLE:
        if verdict:
            raise LabelingError(
                f"verdict: this is a {queue.mode} queue; send an order, not a verdict",
                field="verdict",
            )
        return ""
    if not verdict:
        raise LabelingError(
            "verdict: this queue asks whether the answer is good or bad", field="verdict"
        )
    if verdict not in Verdict.values:
        raise LabelingError(
            f"verdict: {verdict!r} is not one of {', '.join(Verdict.values)}", field="verdict"
        )
    if both_bad:
        raise LabelingError("both_bad: a single answer is judged by its verdict", field="both_bad")
    return str(verdict)


def _last_version(task: LabelingTask, user: User) -> RankingVersion | None:
    return RankingVersion.objects.filter(task=task, annotator=user).order_by("-version").first()


def _write_version(
    *,
    task: LabelingTask,
    user: User,
    action: str,
    now: Any,
    ranking: Ranking | None = None,
    demonstration: str = "",
    time_spent_ms: int = 0,
) -> RankingVersion:
    """Append a version (a tombstone when ``ranking`` is None). Never updates a row."""
    last = _last_version(task, user)
    return RankingVersion.objects.create(
        task=task,
        annotator=user,
        version=(last.version if last else 0) + 1,
        action=action,
        order=ranking.order if ranking else [],
        scores=ranking.scores if ranking else {},
        both_bad=ranking.both_bad if ranking else False,
        verdict=ranking.verdict if ranking else "",
        comment=ranking.comment if ranking else "",
        flags=ranking.flags if ranking else [],
        demonstration=demonstration,
        time_spent_ms=time_spent_ms,
        first_submitted_at=last.first_submitted_at if last else now,
        created_at=now,
    )


@transaction.atomic
def ranking_submit(*, assignment_id: int, user: User, submission: Submission) -> Ranking:
    """Store a ranking and its comparisons in one transaction, and append a version.

    A repeated identical submit returns the stored ranking (idempotent); a different one on
    an already submitted task is an edit: a new version, and the current ranking and its
    comparisons show it (their first-submitted time is kept). A submit after the lease
    expired is refused with a message saying so. Scores must agree with the ranking.
    """
    try:
        assignment = (
            Assignment.objects.select_for_update()
            .select_related("task__queue")
            .get(pk=assignment_id, annotator=user)
        )
    except Assignment.DoesNotExist:
        raise LabelingError("this task is not assigned to you") from None
    task = assignment.task
    queue = task.queue
    order = _validate_order(task, submission.order)
    scores = _validate_scores(queue, task, submission.scores, order)
    verdict = _validate_verdict(queue, submission.verdict, submission.both_bad)
    flags = sorted(set(submission.flags))
    if unknown := [f for f in flags if f not in FLAGS]:
        raise LabelingError(f"unknown flag {unknown[0]!r}; use {', '.join(FLAGS)}")
    demonstration = submission.demonstration.strip()
    time_spent_ms = max(0, min(submission.time_spent_ms, 24 * 3600 * 1000))
    now = timezone.now()

    if assignment.status == Assignment.Status.SUBMITTED:
        ranking = assignment.ranking
        last = _last_version(task, user)
        same = (
            ranking.order,
            ranking.scores,
            ranking.both_bad,
            ranking.verdict,
            ranking.comment,
            ranking.flags,
        )
        if same == (order, scores, submission.both_bad, verdict, submission.comment, flags) and (
            last is None or last.demonstration == demonstration
        ):
            return ranking
        ranking.order, ranking.scores, ranking.both_bad = order, scores, submission.both_bad
        ranking.verdict = verdict
        ranking.comment, ranking.flags = submission.comment, flags
        version = _write_version(
            task=task,
            user=user,
            action=RankingVersion.Action.EDITED,
            now=now,
            ranking=ranking,
            demonstration=demonstration,
            time_spent_ms=time_spent_ms,
        )
        ranking.version = version.version
        ranking.save()
        ranking.comparisons.all().delete()
        Comparison.objects.bulk_create(comparison_expand_ranking(ranking))
        _store_demonstration(task, user, demonstration)
        return ranking
    if assignment.status != Assignment.Status.ACTIVE:
        raise LabelingError("you skipped this task; it went back to the pool")
    if assignment.expires_at <= now:
        minutes = max(1, queue.lease_seconds // 60)
        raise LeaseExpired(
            f"Your claim on this task expired (tasks are held for {minutes} min) and it went "
            "back to the pool. Nothing was saved; load the next task."
        )
    previous = _last_version(task, user)
    ranking = Ranking(
        assignment=assignment,
        task=task,
        annotator=user,
        order=order,
        scores=scores,
        both_bad=submission.both_bad,
        verdict=verdict,
        time_spent_ms=time_spent_ms,
        comment=submission.comment,
        flags=flags,
    )
    version = _write_version(
        task=task,
        user=user,
        action=(RankingVersion.Action.RESUBMITTED if previous else RankingVersion.Action.SUBMITTED),
        now=now,
        ranking=ranking,
        demonstration=demonstration,
        time_spent_ms=time_spent_ms,
    )
    ranking.created_at = version.first_submitted_at
    ranking.version = version.version
    ranking.save()
    Comparison.objects.bulk_create(comparison_expand_ranking(ranking))
    if assignment.counts_toward_overlap:
        LabelingTask.objects.filter(pk=task.pk).update(submitted_count=F("submitted_count") + 1)
    assignment.status = Assignment.Status.SUBMITTED
    assignment.finished_at = now
    assignment.save(update_fields=["status", "finished_at"])
    _store_demonstration(task, user, demonstration)
    return ranking


def _store_demonstration(task: LabelingTask, user: User, text: str) -> None:
    """The current demonstration of (task, annotator); its versions are in RankingVersion."""
    existing = Demonstration.objects.filter(task=task, annotator=user).first()
    if not text:
        if existing is not None:
            existing.delete()
        return
    if existing is not None:
        existing.text = text
        existing.save(update_fields=["text", "updated_at"])
    else:
        Demonstration.objects.create(prompt=task.prompt, task=task, annotator=user, text=text)


@transaction.atomic
def ranking_undo_last(*, queue: LabelingQueue, user: User) -> Assignment | None:
    """Take back the annotator's latest submission or edit in ``queue``: a tombstone version
    is appended, the current ranking, comparisons and demonstration go, and the task is
    theirs again with a fresh lease. Earlier versions stay in the record."""
    ranking = (
        Ranking.objects.select_for_update()
        .filter(task__queue=queue, annotator=user)
        .order_by("-updated_at", "-id")
        .first()
    )
    if ranking is None:
        return None
    return _ranking_take_back(ranking=ranking, queue=queue, user=user)


@transaction.atomic
def ranking_take_back(*, ranking_id: int, user: User) -> Assignment | None:
    """Take back one of the annotator's current labels (to label that task again, as after
    a rejection in review): the same tombstone and fresh lease as an undo. None when the
    label is not theirs or is gone."""
    ranking = (
        Ranking.objects.select_for_update()
        .select_related("task__queue")
        .filter(pk=ranking_id, annotator=user)
        .first()
    )
    if ranking is None:
        return None
    return _ranking_take_back(ranking=ranking, queue=ranking.task.queue, user=user)


def _ranking_take_back(*, ranking: Ranking, queue: LabelingQueue, user: User) -> Assignment:
    assignment = ranking.assignment
    now = timezone.now()
    _write_version(task=ranking.task, user=user, action=RankingVersion.Action.UNDONE, now=now)
    Demonstration.objects.filter(task=ranking.task, annotator=user).delete()
    ranking.delete()  # cascades to its comparisons (the current view only)
    if assignment.counts_toward_overlap:
        LabelingTask.objects.filter(pk=ranking.task_id).update(
            submitted_count=F("submitted_count") - 1
        )
    # Put back any claim the annotator holds, so the undone task is the one shown next.
    Assignment.objects.filter(
        task__queue=queue, annotator=user, status=Assignment.Status.ACTIVE
    ).exclude(pk=assignment.pk).delete()
    assignment.status = Assignment.Status.ACTIVE
    assignment.claimed_at = now
    assignment.expires_at = now + timedelta(seconds=queue.lease_seconds)
    assignment.finished_at = None
    assignment.save(update_fields=["status", "claimed_at", "expires_at", "finished_at"])
    return assignment


def ranking_versions_record_imported(*, rankings: Sequence[Ranking], now: Any) -> None:
    """Version 1 of labels created in bulk (imports), so they are in the record too."""
    RankingVersion.objects.bulk_create(
        [
            RankingVersion(
                task_id=r.task_id,
                annotator_id=r.annotator_id,
                version=1,
                action=RankingVersion.Action.SUBMITTED,
                order=r.order,
                scores=r.scores or {},
                both_bad=r.both_bad,
                verdict=r.verdict,
                comment=r.comment,
                flags=r.flags or [],
                first_submitted_at=now,
                created_at=now,
            )
            for r in rankings
        ],
        batch_size=2000,
    )
