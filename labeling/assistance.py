"""Reward-model assistance for a labeling queue (writes).

An admin picks a finished reward run for a queue. Its model scores the completions of the
queue's generation jobs (``training.scorings.reward_scoring_create``: rows of
``CompletionReward``, computed on the ``training`` queue); then each task gets a priority,
the reward model's smallest gap between the task's completions, which the claim serves
first under ``task_order="uncertainty"``. The same rewards let the model label the queue
as an extra annotator, the *AI labeler*: a pseudo-user (inactive, unusable password, in
the ``ai-labeler`` group) that submits a ranking per task through ``ranking_submit``, like
a human, but on assignments that never take one of the task's overlap slots. Reads (the
dashboard's agreement figures) live in ``labeling.selectors``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone

from config.roles import pseudo_user_get_or_create
from labeling import agreement, selectors, services
from labeling.models import AI_LABELER_GROUP, Assignment, LabelingQueue, LabelingTask

if TYPE_CHECKING:
    from training.models import TrainingRun

logger = logging.getLogger(__name__)

AI_USERNAME_PREFIX = "ai:"
_USERNAME_LENGTH = 150
PRIORITY_BATCH = 1000


class AssistError(services.LabelingError):
    """Assistance that cannot be set up or carried out; the message says why."""


def _check_reward_run(run: TrainingRun) -> None:
    from training.runs import RunError, reward_run_check_finished

    try:
        reward_run_check_finished(run)
    except RunError as exc:
        raise AssistError(str(exc)) from exc


def _note(queue_id: int, text: str) -> None:
    LabelingQueue.objects.filter(pk=queue_id).update(assist_note=text)


# --- choosing a reward run ------------------------------------------------------------------


def _start_scorings(queue: LabelingQueue, run: TrainingRun, user: AbstractBaseUser | None) -> int:
    """Queue a scoring of every job of the queue that ``run`` has not scored (or whose last
    scoring failed). Returns how many jobs are not scored yet."""
    from training import runs, scorings
    from training.models import RewardScoring

    pending = 0
    for job in queue.jobs.all():
        latest = (
            RewardScoring.objects.filter(reward_run=run, job=job).order_by("-created_at", "-id")
        ).first()
        if latest is not None and latest.status == RewardScoring.Status.SUCCEEDED:
            continue
        pending += 1
        if latest is not None and latest.status not in RewardScoring.RESUMABLE:
            continue  # queued or running already
        try:
            scorings.reward_scoring_create(reward_run=run, job=job, user=user)
        except runs.RunError as exc:
            raise AssistError(str(exc)) from None
    return pending


@transaction.atomic
def labeling_queue_assist_set(
    *,
    queue: LabelingQueue,
    reward_run: TrainingRun | None,
    task_order: str = LabelingQueue.TaskOrder.POSITION,
    user: AbstractBaseUser | None = None,
) -> LabelingQueue:
    """Choose the queue's assisting reward run (or none) and its task order.

    A new run clears the tasks' priorities and scores the queue's jobs it has not scored on
    the training queue; the priorities follow when the scoring is done (at once when every
    job is scored already). ``task_order="uncertainty"`` needs a reward run.
    """
    if task_order not in LabelingQueue.TaskOrder.values:
        raise AssistError(f"unknown task order {task_order!r}")
    if task_order == LabelingQueue.TaskOrder.UNCERTAINTY and reward_run is None:
        raise AssistError("uncertainty first needs a reward run to measure uncertainty")
    if reward_run is not None:
        _check_reward_run(reward_run)
    current = (
        LabelingQueue.objects.select_for_update()
        .filter(pk=queue.pk)
        .values_list("reward_run_id", flat=True)
        .get()
    )
    if current != (reward_run.pk if reward_run else None):
        LabelingTask.objects.filter(queue=queue).update(priority=None)
    queue.reward_run = reward_run
    queue.task_order = task_order
    queue.assist_note = ""
    queue.save(update_fields=["reward_run", "task_order", "assist_note"])
    if reward_run is None:
        return queue
    pending = _start_scorings(queue, reward_run, user)
    if pending:
        queue.assist_note = (
            f"Scoring {pending} job{'s' if pending > 1 else ''} with {reward_run.name}; "
            "the tasks get their priority when it finishes."
        )
        queue.save(update_fields=["assist_note"])
        queue_id = queue.pk
        from labeling.tasks import labeling_queue_assist_finish

        transaction.on_commit(lambda: labeling_queue_assist_finish.delay(queue_id))
    else:
        scored = labeling_queue_priorities_compute(queue=queue)
        queue.assist_note = _priorities_note(queue, reward_run, scored)
        queue.save(update_fields=["assist_note"])
    return queue


def _priorities_note(queue: LabelingQueue, run: TrainingRun, scored: int) -> str:
    return f"Priorities from {run.name}: {scored} of {queue.tasks.count()} tasks scored."


@transaction.atomic
def labeling_queue_priorities_compute(*, queue: LabelingQueue) -> int:
    """Set every task's priority from the queue's reward run: the smallest gap between the
    rewards of its completions (``|r_a - r_b|`` for a pair); null when a completion has no
    reward, or when the queue has no reward run. Returns how many tasks got a priority."""
    rewards = (
        selectors.queue_rewards(queue=queue, reward_run_id=queue.reward_run_id)
        if queue.reward_run_id
        else {}
    )
    tasks = []
    for task_id, ids in selectors.queue_task_completions(queue=queue).items():
        gap = (
            agreement.reward_gap([rewards[c] for c in ids])
            if all(c in rewards for c in ids)
            else None
        )
        tasks.append(LabelingTask(pk=task_id, priority=gap))
    LabelingTask.objects.bulk_update(tasks, ["priority"], batch_size=PRIORITY_BATCH)
    return sum(1 for t in tasks if t.priority is not None)


# --- work on the training queue -------------------------------------------------------------


def _score_queue_jobs(queue: LabelingQueue, run: TrainingRun) -> bool:
    """Make sure ``run`` has scored every job of the queue: a queued scoring runs here and
    now (its own message then finds it taken and does nothing). True when all are scored,
    False while another worker is still scoring one; AssistError when a scoring failed."""
    from training import runs, scorings
    from training.models import RewardScoring

    ready = True
    for job in queue.jobs.all():
        latest = (
            RewardScoring.objects.filter(reward_run=run, job=job).order_by("-created_at", "-id")
        ).first()
        if latest is None:
            try:
                latest = scorings.reward_scoring_create(reward_run=run, job=job)
            except runs.RunError as exc:
                raise AssistError(str(exc)) from None
        status = latest.status
        if status == RewardScoring.Status.QUEUED:
            status = scorings.reward_scoring_execute(scoring_id=latest.pk)
        if status in RewardScoring.RESUMABLE:
            error = RewardScoring.objects.filter(pk=latest.pk).values_list("error", flat=True)
            raise AssistError(f"scoring {job} with {run.name} {status}: {error.first() or '?'}")
        if status != RewardScoring.Status.SUCCEEDED:
            ready = False
    return ready


def _with_scores(
    queue_id: int, reward_run_id: int, work: Callable[[LabelingQueue, TrainingRun], str]
) -> str:
    """Run ``work`` once the queue's jobs are scored by the run: "waiting" while another
    worker scores, "failed" (with the reason in the queue's note), else what work returns."""
    from training.models import TrainingRun

    queue = LabelingQueue.objects.filter(pk=queue_id).first()
    run = TrainingRun.objects.filter(pk=reward_run_id).first()
    if queue is None or run is None:
        return "skipped"
    try:
        _check_reward_run(run)
        if not _score_queue_jobs(queue, run):
            return "waiting"
        return work(queue, run)
    except AssistError as exc:
        _note(queue_id, str(exc))
        return "failed"


def labeling_queue_assist_finish(*, queue_id: int) -> str:
    """After choosing a reward run: wait for its scorings, then compute the priorities.

    Returns "done", "waiting" (the task retries later), "failed" or "skipped" (the queue
    changed its reward run meanwhile, or is gone)."""
    reward_run_id = (
        LabelingQueue.objects.filter(pk=queue_id).values_list("reward_run_id", flat=True).first()
    )
    if reward_run_id is None:
        return "skipped"

    def compute(queue: LabelingQueue, run: TrainingRun) -> str:
        with transaction.atomic():
            queue = LabelingQueue.objects.select_for_update().get(pk=queue.pk)
            if queue.reward_run_id != run.pk:
                return "skipped"
            scored = labeling_queue_priorities_compute(queue=queue)
            _note(queue.pk, _priorities_note(queue, run, scored))
        return "done"

    return _with_scores(queue_id, reward_run_id, compute)


# --- the AI labeler -------------------------------------------------------------------------


def ai_labeler_username(run: TrainingRun) -> str:
    """``ai:<run name>``, trimmed to the username length (with the run's id when trimmed,
    so two long names never share a labeler). Colons are outside Django's username
    characters, so no human can register one."""
    name = f"{AI_USERNAME_PREFIX}{run.name}"
    if len(name) <= _USERNAME_LENGTH:
        return name
    suffix = f"~{run.pk}"
    return name[: _USERNAME_LENGTH - len(suffix)] + suffix


def ai_labeler_user(*, reward_run: TrainingRun) -> AbstractBaseUser:
    """The reward run's pseudo-user: inactive, no usable password, in the ai-labeler group,
    holding no role (it never signs in, claims or sees a page)."""
    user = pseudo_user_get_or_create(
        username=ai_labeler_username(reward_run), last_name="AI labeler"
    )
    group, _ = Group.objects.get_or_create(name=AI_LABELER_GROUP)
    user.groups.add(group)  # type: ignore[attr-defined]
    return user  # type: ignore[no-any-return]


@transaction.atomic
def labeling_queue_ai_label_start(
    *, queue: LabelingQueue, user: AbstractBaseUser | None = None
) -> None:
    """Queue the AI labeler for the queue's reward run on the training queue."""
    run = queue.reward_run
    if run is None:
        raise AssistError("choose a reward run for this queue first")
    _check_reward_run(run)
    queue_id, run_id = queue.pk, run.pk
    _note(queue_id, f"AI labeler ({run.name}) queued.")
    from labeling.tasks import labeling_queue_ai_label

    transaction.on_commit(lambda: labeling_queue_ai_label.delay(queue_id, run_id))


def labeling_queue_ai_label(*, queue_id: int, reward_run_id: int) -> str:
    """Label every task of the queue with the reward model, as its AI labeler.

    Scores the queue's jobs first if needed. Each task whose completions all have a reward
    gets a ranking, highest reward first, equal rewards tied, submitted with
    ``services.ranking_submit`` on an assignment that does not count toward the overlap:
    humans can still label every task. Running it again re-submits (an edit when the
    rewards changed, else nothing). Returns "done", "waiting", "failed" or "skipped"."""

    def label(queue: LabelingQueue, run: TrainingRun) -> str:
        labeled = _ai_label(queue, run)
        _note(
            queue.pk, f"AI labeler ({run.name}) labeled {labeled} of {queue.tasks.count()} tasks."
        )
        return "done"

    return _with_scores(queue_id, reward_run_id, label)


def _ai_label(queue: LabelingQueue, run: TrainingRun) -> int:
    ai = ai_labeler_user(reward_run=run)
    rewards = selectors.queue_rewards(queue=queue, reward_run_id=run.pk)
    labeled = 0
    for task_id, ids in selectors.queue_task_completions(queue=queue).items():
        if not all(c in rewards for c in ids):
            continue
        now = timezone.now()
        assignment, created = Assignment.objects.get_or_create(
            task_id=task_id,
            annotator=ai,
            defaults={
                "claimed_at": now,
                "expires_at": now + timedelta(seconds=queue.lease_seconds),
                "counts_toward_overlap": False,
            },
        )
        if not created and assignment.status == Assignment.Status.ACTIVE:
            Assignment.objects.filter(pk=assignment.pk).update(
                expires_at=now + timedelta(seconds=queue.lease_seconds)
            )
        services.ranking_submit(
            assignment_id=assignment.pk,
            user=ai,
            submission=services.Submission(
                order=agreement.order_by_reward({c: rewards[c] for c in ids})
            ),
        )
        labeled += 1
    return labeled
