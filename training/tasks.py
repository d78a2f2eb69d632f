from __future__ import annotations

from typing import Any

from celery import shared_task

from training import assistance, constitution, runs, scorings

# While another worker is still scoring a queue's jobs, look again this much later.
ASSIST_RETRY_S = 15


@shared_task(name="training.tasks.training_run_execute", acks_late=True)
def training_run_execute(run_id: int) -> str:
    """Train a queued run; a second delivery of the same message is a no-op."""
    return runs.training_run_execute(run_id=run_id)


@shared_task(name="training.tasks.reward_scoring_execute", acks_late=True)
def reward_scoring_execute(scoring_id: int) -> str:
    """Score a generation job's completions with a finished reward model."""
    return scorings.reward_scoring_execute(scoring_id=scoring_id)


@shared_task(name="training.tasks.loops_advance")
def loops_advance() -> int:
    """Every 30 s: open the labeling queue of each evaluation and next round whose generation
    jobs have all finished (or mark it failed)."""
    from training import rounds

    return rounds.loops_advance()


# Reward-model assistance runs on the ``training`` queue, beside the scorings it waits for.


@shared_task(name="training.tasks.queue_assist_finish", bind=True, acks_late=True, max_retries=None)
def queue_assist_finish(self: Any, queue_id: int) -> str:
    """Compute the tasks' priorities once the queue's reward run has scored its jobs."""
    state = assistance.queue_assist_finish(queue_id=queue_id)
    if state == "waiting":
        raise self.retry(countdown=ASSIST_RETRY_S)
    return state


@shared_task(name="training.tasks.queue_ai_label", bind=True, acks_late=True, max_retries=None)
def queue_ai_label(self: Any, queue_id: int, reward_run_id: int) -> str:
    """Label the queue with its reward model as the AI labeler."""
    state = assistance.queue_ai_label(queue_id=queue_id, reward_run_id=reward_run_id)
    if state == "waiting":
        raise self.retry(countdown=ASSIST_RETRY_S)
    return state


@shared_task(name="training.tasks.constitution_label", acks_late=True)
def constitution_label(labeler_id: int) -> str:
    """Label a queue with a language model judging by the queue's constitution."""
    return constitution.constitution_label_execute(labeler_id=labeler_id)
