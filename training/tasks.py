from __future__ import annotations

from celery import shared_task

from training import runs, scorings


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
    from training import evaluations

    return evaluations.loops_advance()
