from __future__ import annotations

import pytest

from config.tasks import ping


@pytest.mark.celery_worker
def test_it_round_trips_a_task_through_the_broker(celery_worker) -> None:  # type: ignore[no-untyped-def]
    result = ping.delay("hello through the broker")
    assert result.get(timeout=30) == "hello through the broker"


def test_it_routes_heavy_tasks_to_their_queues() -> None:
    from config.celery import app

    router = app.amqp.router
    assert router.route({}, "generation.tasks.generation_job_run")["queue"].name == "generation"
    assert router.route({}, "training.tasks.training_run_execute")["queue"].name == "training"
    assert router.route({}, "preflab.ping")["queue"].name == "default"
