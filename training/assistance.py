"""Reward-model assistance for a labeling queue (writes).

An admin picks a finished reward run for a queue (a ``QueueAssistance`` row). Its model
scores the completions of the queue's generation jobs (``scorings.reward_scoring_create``:
rows of ``CompletionReward``, computed on the ``training`` queue); then each task gets a
priority, the reward model's smallest gap between the task's completions, which the claim
serves first under the queue's ``task_order="uncertainty"``. The same rewards let the model
label the queue as an extra annotator, the *AI labeler*: a pseudo-user (inactive, unusable
password, in labeling's ``ai-labeler`` group) that submits a ranking per task through
``ranking_submit``, like a human, but on assignments that never take one of the task's
overlap slots. Labeling knows none of this: it offers the hooks (task priority and order,
uncounted assignments, the AI group, the dashboard's reference scores and panels) that this
module and ``training.selectors`` fill. Tasks: ``training.tasks.queue_assist_finish`` and
``training.tasks.queue_ai_label``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth.models import Group, User
from django.db import transaction

from config.roles import pseudo_user_get_or_create
from labeling import agreement
from labeling import selectors as labeling_selectors
from labeling import services as labeling_services
from labeling.models import AI_LABELER_GROUP, LabelingQueue
from training import runs, scorings, selectors
from training.models import QueueAssistance, RewardScoring, TrainingRun

logger = logging.getLogger(__name__)

AI_USERNAME_PREFIX = "ai:"
_USERNAME_LENGTH = 150


class AssistError(labeling_services.LabelingError):
    """Assistance that cannot be set up or carried out; the message says why."""


def _check_reward_run(run: TrainingRun) -> None:
    try:
        runs.reward_run_check_finished(run)
    except runs.RunError as exc:
        raise AssistError(str(exc)) from exc


def _note(queue_id: int, text: str) -> None:
    QueueAssistance.objects.filter(queue_id=queue_id).update(note=text)


# --- choosing a reward run ------------------------------------------------------------------


def _start_scorings(queue: LabelingQueue, run: TrainingRun, user: User | None) -> int:
    """Queue a scoring of every job of the queue that ``run`` has not scored (or whose last
    scoring failed). Returns how many jobs are not scored yet."""
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
def queue_assistance_set(
    *,
    queue: LabelingQueue,
    reward_run: TrainingRun | None,
    task_order: str = LabelingQueue.TaskOrder.POSITION,
    user: User | None = None,
) -> QueueAssistance:
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
    assist, _ = QueueAssistance.objects.select_for_update().get_or_create(queue=queue)
    changed = assist.reward_run_id != (reward_run.pk if reward_run else None)
    labeling_services.labeling_queue_task_order_set(
        queue=queue, task_order=task_order, clear_priorities=changed
    )
    assist.reward_run = reward_run
    assist.note = ""
    assist.save(update_fields=["reward_run", "note", "updated_at"])
    if reward_run is None:
        return assist
    pending = _start_scorings(queue, reward_run, user)
    if pending:
        assist.note = (
            f"Scoring {pending} job{'s' if pending > 1 else ''} with {reward_run.name}; "
            "the tasks get their priority when it finishes."
        )
        assist.save(update_fields=["note", "updated_at"])
        queue_id = queue.pk
        from training.tasks import queue_assist_finish

        transaction.on_commit(lambda: queue_assist_finish.delay(queue_id))
    else:
        scored = queue_priorities_compute(queue=queue)
        assist.note = _priorities_note(queue, reward_run, scored)
        assist.save(update_fields=["note", "updated_at"])
    return assist


def _priorities_note(queue: LabelingQueue, run: TrainingRun, scored: int) -> str:
    return f"Priorities from {run.name}: {scored} of {queue.tasks.count()} tasks scored."


@transaction.atomic
def queue_priorities_compute(*, queue: LabelingQueue) -> int:
    """Set every task's priority from the queue's reward run: the smallest gap between the
    rewards of its completions (``|r_a - r_b|`` for a pair); null when a completion has no
    reward, or when the queue has no reward run. Returns how many tasks got a priority."""
    reward_run_id = selectors.queue_assistance_run_id(queue=queue)
    rewards = (
        selectors.queue_rewards(queue=queue, reward_run_id=reward_run_id) if reward_run_id else {}
    )
    priorities = {
        task_id: (
            agreement.reward_gap([rewards[c] for c in ids])
            if all(c in rewards for c in ids)
            else None
        )
        for task_id, ids in labeling_selectors.queue_task_completions(queue=queue).items()
    }
    return labeling_services.task_priorities_set(queue=queue, priorities=priorities)


# --- work on the training queue -------------------------------------------------------------


def _score_queue_jobs(queue: LabelingQueue, run: TrainingRun) -> bool:
    """Make sure ``run`` has scored every job of the queue: a queued scoring runs here and
    now (its own message then finds it taken and does nothing). True when all are scored,
    False while another worker is still scoring one; AssistError when a scoring failed."""
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


def queue_assist_finish(*, queue_id: int) -> str:
    """After choosing a reward run: wait for its scorings, then compute the priorities.

    Returns "done", "waiting" (the task retries later), "failed" or "skipped" (the queue
    changed its reward run meanwhile, or is gone)."""
    reward_run_id = (
        QueueAssistance.objects.filter(queue_id=queue_id)
        .values_list("reward_run_id", flat=True)
        .first()
    )
    if reward_run_id is None:
        return "skipped"

    def compute(queue: LabelingQueue, run: TrainingRun) -> str:
        with transaction.atomic():
            assist = QueueAssistance.objects.select_for_update().get(queue=queue)
            if assist.reward_run_id != run.pk:
                return "skipped"
            scored = queue_priorities_compute(queue=queue)
            _note(queue.pk, _priorities_note(queue, run, scored))
        return "done"

    return _with_scores(queue_id, reward_run_id, compute)


# --- the AI labeler -------------------------------------------------------------------------


def ai_username(name: str, key: str) -> str:
    """``ai:<name>``, trimmed to the username length (ending ``~<key>`` when trimmed, so two
    long names with different keys never share a labeler). Colons are outside Django's
    username characters, so no human can register one."""
    full = f"{AI_USERNAME_PREFIX}{name}"
    if len(full) <= _USERNAME_LENGTH:
        return full
    suffix = f"~{key}"
    return full[: _USERNAME_LENGTH - len(suffix)] + suffix


def ai_labeler_username(run: TrainingRun) -> str:
    """``ai:<run name>`` (see :func:`ai_username`)."""
    return ai_username(run.name, str(run.pk))


def ai_pseudo_user(*, username: str, description: str = "AI labeler") -> User:
    """An AI labeler's pseudo-user: inactive, no usable password, in the ai-labeler group,
    holding no role (it never signs in, claims or sees a page)."""
    user = pseudo_user_get_or_create(username=username, last_name=description)
    group, _ = Group.objects.get_or_create(name=AI_LABELER_GROUP)
    user.groups.add(group)  # type: ignore[attr-defined]
    return user  # type: ignore[no-any-return]


def ai_labeler_user(*, reward_run: TrainingRun) -> User:
    """The reward run's pseudo-user (:func:`ai_pseudo_user`)."""
    return ai_pseudo_user(username=ai_labeler_username(reward_run))


def ai_label_submit(
    *, queue: LabelingQueue, ai: User, task_id: int, order: list[list[int]]
) -> None:
    """Submit an AI labeler's best-first ranking of a task through labeling's
    ``ranking_submit``, on an assignment that never takes one of the task's overlap slots
    (humans can still label every task). Again on a task it labeled: an edit when the
    order changed, else nothing."""
    assignment = labeling_services.assignment_uncounted_open(
        task_id=task_id, user=ai, lease_seconds=queue.lease_seconds
    )
    labeling_services.ranking_submit(
        assignment_id=assignment.pk,
        user=ai,
        submission=labeling_services.Submission(order=order),
    )


@transaction.atomic
def queue_ai_label_start(*, queue: LabelingQueue, user: User | None = None) -> None:
    """Queue the AI labeler for the queue's reward run on the training queue."""
    if queue.mode == LabelingQueue.Mode.SINGLE:
        raise AssistError(
            "the reward-model AI labeler ranks a task's answers; a single-answer queue has "
            "one answer per task and asks for good or bad"
        )
    run = selectors.queue_assistance_run(queue=queue)
    if run is None:
        raise AssistError("choose a reward run for this queue first")
    _check_reward_run(run)
    queue_id, run_id = queue.pk, run.pk
    _note(queue_id, f"AI labeler ({run.name}) queued.")
    from training.tasks import queue_ai_label as queue_ai_label_task

    transaction.on_commit(lambda: queue_ai_label_task.delay(queue_id, run_id))


def queue_ai_label(*, queue_id: int, reward_run_id: int) -> str:
    """Label every task of the queue with the reward model, as its AI labeler.

    Scores the queue's jobs first if needed. Each task whose completions all have a reward
    gets a ranking, highest reward first, equal rewards tied, submitted with labeling's
    ``ranking_submit`` on an assignment that does not count toward the overlap: humans can
    still label every task. Running it again re-submits (an edit when the rewards changed,
    else nothing). Returns "done", "waiting", "failed" or "skipped"."""

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
    for task_id, ids in labeling_selectors.queue_task_completions(queue=queue).items():
        if not all(c in rewards for c in ids):
            continue
        ai_label_submit(
            queue=queue,
            ai=ai,
            task_id=task_id,
            order=agreement.order_by_reward({c: rewards[c] for c in ids}),
        )
        labeled += 1
    return labeled
