from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import Assignment
from tests.labeling.factories import make_queue


def _api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_it_serves_a_task_without_model_identity_and_takes_a_ranking(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=4)
    api = _api(alice)
    assert [q["id"] for q in api.get("/api/labeling/queues/").json()["results"]] == [queue.pk]
    task = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
    assert [c["label"] for c in task["completions"]] == ["A", "B", "C", "D"]
    assert set(task["completions"][0]) == {"id", "label", "text"}
    ids = [c["id"] for c in task["completions"]]
    response = api.post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "order": [[i] for i in ids]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["comparisons"] == 6
    comparisons = api.get(f"/api/labeling/comparisons/?queue={queue.pk}").json()
    assert comparisons["count"] == 6
    assert api.get("/api/labeling/rankings/").json()["results"][0]["order"] == [[i] for i in ids]


def test_it_answers_409_after_the_lease_expired(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    api = _api(alice)
    task = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=5))
    ids = [c["id"] for c in task["completions"]]
    response = api.post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "order": [[ids[0]], [ids[1]]]},
        format="json",
    )
    assert response.status_code == 409 and "expired" in response.json()["detail"]


def test_it_answers_204_when_nothing_is_left(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    api = _api(alice)
    task = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
    api.post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "skip": True},
        format="json",
    )
    assert api.post(f"/api/labeling/queues/{queue.pk}/next/").status_code == 204


def test_it_keeps_rankings_private(alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    task = _api(alice).post(f"/api/labeling/queues/{queue.pk}/next/").json()
    ids = [c["id"] for c in task["completions"]]
    _api(alice).post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "order": [[ids[0]], [ids[1]]]},
        format="json",
    )
    assert _api(bob).get("/api/labeling/rankings/").json()["count"] == 0
    assert _api(bob).get("/api/labeling/comparisons/").json()["count"] == 0
    assert _api(carol).get("/api/labeling/rankings/").json()["count"] == 1
    stolen = _api(bob).post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "order": [[ids[1]], [ids[0]]]},
        format="json",
    )
    assert stolen.status_code == 404


def test_it_rejects_a_bad_order_and_researchers(alice, dave) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    api = _api(alice)
    task = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
    bad = api.post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "order": [["Z"]]},
        format="json",
    )
    assert bad.status_code == 400 and "not an answer of this task" in bad.json()["detail"]
    assert _api(dave).post(f"/api/labeling/queues/{queue.pk}/next/").status_code == 403


def test_it_lets_admins_mark_gold_tasks_and_scores_annotators_on_them(alice, carol) -> None:  # type: ignore[no-untyped-def]
    from labeling import selectors
    from labeling.models import LabelingTask

    queue = make_queue(mode="pairwise", prompts=1, k=2)
    task = LabelingTask.objects.get(queue=queue)
    a, b = task.slots.order_by("slot").values_list("completion_id", flat=True)
    assert (
        _api(alice)
        .post(f"/api/labeling/tasks/{task.pk}/gold/", {"order": [[a], [b]]}, format="json")
        .status_code
        == 404
    )
    bad = _api(carol).post(f"/api/labeling/tasks/{task.pk}/gold/", {"order": [[a]]}, format="json")
    assert bad.status_code == 400
    marked = _api(carol).post(
        f"/api/labeling/tasks/{task.pk}/gold/", {"order": [[a], [b]]}, format="json"
    )
    assert marked.json()["is_gold"] is True
    claim = _api(alice).post(f"/api/labeling/queues/{queue.pk}/next/").json()
    _api(alice).post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": claim["assignment"], "order": [["B"], ["A"]]},
        format="json",
    )
    board = selectors.queue_dashboard(queue=queue, user=carol)
    assert [(x.username, x.gold) for x in board.annotators] == [("alice", (0, 1))]


@pytest.mark.parametrize(
    "body", [[], [[1]], None, "order", 7, {"order": "AB"}, {"order": [[None]]}, {}]
)
def test_it_answers_a_gold_body_that_is_not_an_order_with_a_400(carol, body) -> None:  # type: ignore[no-untyped-def]
    from labeling.models import LabelingTask

    queue = make_queue(mode="pairwise", prompts=1, k=2)
    task = LabelingTask.objects.get(queue=queue)
    response = _api(carol).post(f"/api/labeling/tasks/{task.pk}/gold/", body, format="json")
    assert response.status_code == 400
    task.refresh_from_db()
    assert task.is_gold is False and not task.gold_order
