from __future__ import annotations

from celery import shared_task

from config.jobs.lifecycle import background_jobs_fail_stale


@shared_task(name="preflab.ping", ignore_result=False)
def ping(payload: str = "pong") -> str:
    """Round-trip check for a worker: returns its argument."""
    return payload


@shared_task(name="config.tasks.background_jobs_fail_stale")
def background_jobs_watchdog() -> dict[str, int]:
    """Every minute: fail the running rows of every kind of background job whose worker
    stopped sending heartbeats (resume picks them up). Returns the count per kind."""
    return background_jobs_fail_stale()
