from __future__ import annotations

from django.test import Client

from labeling import services
from labeling.models import LabelingQueue
from tests.labeling.factories import finished_job, make_queue


def test_it_creates_a_queue_from_the_form(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = finished_job(prompts=3, k=4)
    client.force_login(carol)
    response = client.post(
        "/labeling/queues/new/",
        {
            "name": "rank them",
            "jobs": [job.pk],
            "mode": "ranking",
            "overlap": 2,
            "pairs_per_prompt": 1,
            "lease_minutes": 10,
            "guidelines": "",
            "seed": 0,
        },
    )
    queue = LabelingQueue.objects.get()
    assert (
        response.status_code == 302
        and response["Location"] == f"/labeling/queues/{queue.pk}/dashboard/"
    )
    assert (queue.mode, queue.overlap, queue.lease_seconds, queue.tasks.count()) == (
        "ranking",
        2,
        600,
        3,
    )


def test_it_keeps_queue_creation_for_admins(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    assert client.get("/labeling/queues/new/").status_code == 403


def test_it_shows_agreement_on_the_dashboard(client: Client, alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2, overlap=2)
    for user, pick in ((alice, 0), (bob, 0)):
        for _ in range(2):
            claim = services.task_claim_next(queue=queue, user=user)
            ids = list(claim.task.slots.order_by("slot").values_list("completion_id", flat=True))
            services.ranking_submit(
                assignment_id=claim.pk,
                user=user,
                submission=services.Submission(order=[[ids[pick]], [ids[1 - pick]]]),
            )
    client.force_login(carol)
    body = client.get(f"/labeling/queues/{queue.pk}/dashboard/").content.decode()
    assert "Pairwise agreement: <strong>100%</strong>" in body
    assert "on 2 tasks labeled by two or more annotators" in body
    assert 'id="chart-data"' in body and "uPlot.iife.min.js" in body
    assert "alice" in body and "bob" in body


def test_it_hides_the_dashboard_from_annotators(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    client.force_login(alice)
    assert client.get(f"/labeling/queues/{queue.pk}/dashboard/").status_code == 403
