from __future__ import annotations

from celery import shared_task

from generation import services


@shared_task(name="generation.tasks.generation_job_run", acks_late=True)
def generation_job_run(job_id: int) -> str:
    """Run a queued generation job; a second delivery of the same message is a no-op."""
    return services.generation_job_execute(job_id=job_id)
