"""The labeling API on a single-answer (good/bad) queue."""

from __future__ import annotations

from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import Ranking
from tests.labeling.factories import make_queue


def _api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_it_serves_one_answer_and_takes_a_verdict_and_a_score(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=2, ask_scores=True)
    api = _api(alice)
    assert api.get("/api/labeling/queues/").json()["results"][0]["mode"] == "single"
    task = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
    assert [c["label"] for c in task["completions"]] == ["A"]

    response = api.post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "verdict": "bad", "score": 3},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["verdict"], body["order"], body["scores"], body["comparisons"]) == (
        "bad",
        [["A"]],
        {"A": 3},
        0,
    )
    stored = Ranking.objects.get()
    assert stored.verdict == "bad" and list(stored.scores.values()) == [3]
    listed = api.get(f"/api/labeling/rankings/?queue={queue.pk}").json()["results"]
    assert listed[0]["verdict"] == "bad"


def test_it_edits_a_verdict_as_a_new_version(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=1)
    api = _api(alice)
    task = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
    url = f"/api/labeling/queues/{queue.pk}/submit/"
    api.post(url, {"assignment": task["assignment"], "verdict": "good"}, format="json")
    response = api.post(url, {"assignment": task["assignment"], "verdict": "bad"}, format="json")
    assert response.status_code == 201 and response.json()["version"] == 2
