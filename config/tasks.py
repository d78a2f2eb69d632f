from __future__ import annotations

from celery import shared_task


@shared_task(name="preflab.ping", ignore_result=False)
def ping(payload: str = "pong") -> str:
    """Round-trip check for a worker: returns its argument."""
    return payload
