from __future__ import annotations

from django.test import Client

from labeling import services
from labeling.models import LabelingQueue
from tests.labeling.factories import claim_next, finished_job, make_queue


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
            claim = claim_next(queue, user)
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


def test_it_shows_each_annotator_day_by_day(client, carol, alice, bob) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from labeling.models import Ranking
    from labeling.selectors import queue_dashboard
    from tests.labeling.factories import label_queue, make_queue

    queue = make_queue(mode="pairwise", prompts=4, k=2, overlap=2)
    label_queue(queue, alice, time_spent_ms=4000)
    label_queue(queue, bob, order=lambda ids: [[ids[1]], [ids[0]]], time_spent_ms=2000)
    day1 = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    # alice: 4 labels, two on day 1 in two different hours, two on day 2; bob all on day 1.
    for i, ranking in enumerate(Ranking.objects.filter(annotator=alice).order_by("pk")):
        when = day1 + timedelta(hours=i) if i < 2 else day1 + timedelta(days=1, minutes=i)
        Ranking.objects.filter(pk=ranking.pk).update(created_at=when)
    Ranking.objects.filter(annotator=bob).update(created_at=day1)
    days = {
        (d.username, d.day.isoformat()): d for d in queue_dashboard(queue=queue, user=carol).days
    }
    alice1, alice2, bob1 = (
        days[("alice", "2026-11-30")],
        days[("alice", "2026-12-01")],
        days[("bob", "2026-11-30")],
    )
    assert (alice1.labels, alice1.active_hours, alice1.labels_per_hour) == (2, 2, 1.0)
    assert (alice2.labels, alice2.active_hours, alice2.labels_per_hour) == (2, 1, 2.0)
    assert alice1.median_seconds == 4.0 and bob1.median_seconds == 2.0
    assert (bob1.labels, bob1.active_hours) == (4, 1)
    # They disagree on every task: 0 of 2 on each of alice's days, 0 of 4 for bob.
    assert alice1.majority_agree == (0, 2) and alice2.majority_agree == (0, 2)
    assert bob1.majority_agree == (0, 4)
    client.force_login(carol)
    body = client.get(f"/labeling/queues/{queue.pk}/dashboard/").content.decode()
    assert 'id="annotator-days-table"' in body and "2026-12-01" in body
    chart = response_chart(body)
    assert chart["trend"]["annotators"] == ["alice", "bob"]
    # Padded with an empty day on each side, so one day alone still spans an axis.
    assert chart["trend"]["rates"] == [[None, 0.0, 0.0, None], [None, 0.0, None, None]]
    assert len(chart["trend"]["days"]) == 4


def response_chart(body: str):  # type: ignore[no-untyped-def]
    import json
    import re

    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', body, re.S)
    assert match, "the dashboard's chart data is missing"
    return json.loads(match.group(1))
