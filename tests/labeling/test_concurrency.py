"""Twenty annotators claiming and submitting at once: no task over its overlap."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from labeling import services
from labeling.models import Assignment, Comparison
from tests.factories import UserFactory
from tests.labeling.factories import make_queue

ANNOTATORS = 20


@pytest.mark.django_db(transaction=True)
def test_it_never_over_assigns_with_twenty_concurrent_annotators() -> None:
    queue = make_queue(mode="pairwise", prompts=30, k=2, overlap=3)
    users = [UserFactory(username=f"annotator{i}", roles=["annotator"]) for i in range(ANNOTATORS)]
    errors: list[BaseException] = []
    start = threading.Barrier(ANNOTATORS)

    def work(user) -> None:  # type: ignore[no-untyped-def]
        try:
            start.wait()
            while True:
                claim = services.task_claim_next(queue=queue, user=user)
                if claim is None:
                    return
                ids = list(
                    claim.task.slots.order_by("slot").values_list("completion_id", flat=True)
                )
                services.ranking_submit(
                    assignment_id=claim.pk,
                    user=user,
                    submission=services.Submission(order=[[ids[0]], [ids[1]]]),
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]

    submitted = Assignment.objects.filter(task__queue=queue, status="submitted")
    per_task = Counter(submitted.values_list("task_id", flat=True))
    assert set(per_task.values()) == {3}  # every task labeled exactly overlap times
    assert len(per_task) == 30
    pairs = Counter(submitted.values_list("task_id", "annotator_id"))
    assert max(pairs.values()) == 1  # nobody saw a task twice
    assert Comparison.objects.filter(queue=queue).count() == 90
    assert connection.vendor in {"postgresql", "sqlite"}
