from __future__ import annotations

import os
from typing import Any

from celery import shared_task

from generation import services


@shared_task(name="generation.tasks.generation_job_run", bind=True, acks_late=True)
def generation_job_run(self: Any, job_id: int) -> str:
    """Run a queued generation job; a second delivery of the same message is a no-op."""
    # The shards it takes name this worker by its Celery node ("gen2@host", the name given
    # to ``celery worker -n``) and pool process, so a job page tells its workers apart.
    node = self.request.hostname
    worker = f"{node}:{os.getpid()}" if node else None
    return services.generation_job_execute(job_id=job_id, worker=worker)
