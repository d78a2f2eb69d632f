"""Reward-model assistance runs on the ``training`` queue, beside the scorings it waits for."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from labeling import assistance

# While another worker is still scoring the queue's jobs, look again this much later.
ASSIST_RETRY_S = 15


@shared_task(
    name="labeling.tasks.labeling_queue_assist_finish", bind=True, acks_late=True, max_retries=None
)
def labeling_queue_assist_finish(self: Any, queue_id: int) -> str:
    """Compute the tasks' priorities once the queue's reward run has scored its jobs."""
    state = assistance.labeling_queue_assist_finish(queue_id=queue_id)
    if state == "waiting":
        raise self.retry(countdown=ASSIST_RETRY_S)
    return state


@shared_task(
    name="labeling.tasks.labeling_queue_ai_label", bind=True, acks_late=True, max_retries=None
)
def labeling_queue_ai_label(self: Any, queue_id: int, reward_run_id: int) -> str:
    """Label the queue with its reward model as the AI labeler."""
    state = assistance.labeling_queue_ai_label(queue_id=queue_id, reward_run_id=reward_run_id)
    if state == "waiting":
        raise self.retry(countdown=ASSIST_RETRY_S)
    return state
