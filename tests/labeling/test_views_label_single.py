"""The labeling page and the dashboard of a single-answer (good/bad) queue."""

from __future__ import annotations

from django.test import Client

from labeling import services
from labeling.models import Assignment, LabelingQueue, Ranking
from tests.labeling.factories import claim_next, finished_job, make_queue


def _page(client: Client, queue, **headers) -> str:  # type: ignore[no-untyped-def]
    return client.get(f"/labeling/queues/{queue.pk}/", headers=headers).content.decode()


def _answer(assignment: Assignment) -> int:
    return assignment.task.slots.get().completion_id  # type: ignore[no-any-return]


def test_it_shows_one_answer_with_good_and_bad_keys(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=2, ask_scores=True)
    client.force_login(alice)
    body = _page(client, queue)
    assert 'data-mode="single"' in body
    assert body.count('class="candidate single-answer"') == 1
    assert 'value="good" data-key="good"' in body and 'value="bad" data-key="bad"' in body
    assert 'name="score_A"' in body
    assert "<kbd>g</kbd> good" in body and "<kbd>1</kbd>–<kbd>7</kbd> score" in body
    # htmx gets the task fragment only.
    fragment = _page(client, queue, **{"HX-Request": "true"})
    assert "<html" not in fragment and 'data-mode="single"' in fragment


def test_it_stores_good_or_bad_and_serves_the_next_answer(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=2, ask_scores=True)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    response = client.post(
        f"/labeling/queues/{queue.pk}/submit/",
        {"assignment": claim.pk, "choice": "good", "score_A": "6", "flags": ["off-topic"]},
        headers={"HX-Request": "true"},
    )
    assert (
        response.status_code == 200 and "You: <strong>1</strong> done" in response.content.decode()
    )
    ranking = Ranking.objects.get()
    answer = _answer(claim)
    assert (ranking.verdict, ranking.scores, ranking.order) == (
        "good",
        {str(answer): 6},
        [[answer]],
    )
    assert ranking.flags == ["off-topic"]
    # Without htmx: a redirect, as in the other modes.
    claim = Assignment.objects.get(annotator=alice, status="active")
    response = client.post(
        f"/labeling/queues/{queue.pk}/submit/", {"assignment": claim.pk, "choice": "bad"}
    )
    assert response.status_code == 302
    assert Ranking.objects.get(assignment=claim).verdict == "bad"


def test_it_names_the_verdict_when_a_pairwise_choice_comes_to_a_single_answer(
    client: Client, alice
) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=1)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    for choice in ("a", "rank", ""):
        response = client.post(
            f"/labeling/queues/{queue.pk}/submit/",
            {"assignment": claim.pk, "choice": choice},
            headers={"HX-Request": "true"},
        )
        assert "verdict: say whether the answer is good or bad" in response.content.decode()
    assert not Ranking.objects.exists()


def test_it_refuses_a_verdict_on_a_pairwise_task(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    response = client.post(
        f"/labeling/queues/{queue.pk}/submit/",
        {"assignment": claim.pk, "choice": "good"},
        headers={"HX-Request": "true"},
    )
    assert "verdict: this is a pairwise queue" in response.content.decode()
    assert not Ranking.objects.exists()


def test_it_creates_a_single_answer_queue_from_the_form(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = finished_job(prompts=2, k=3)
    client.force_login(carol)
    form = {
        "name": "thumbs",
        "jobs": [job.pk],
        "mode": "single",
        "ask_scores": "on",
        "overlap": 2,
        "pairs_per_prompt": 1,
        "lease_minutes": 10,
        "guidelines": "",
        "seed": 0,
    }
    response = client.post("/labeling/queues/new/", form)
    queue = LabelingQueue.objects.get()
    assert response.status_code == 302
    assert (queue.mode, queue.ask_scores, queue.tasks.count()) == ("single", True, 6)
    response = client.post("/labeling/queues/new/", form | {"name": "x", "mode": "thumbs"})
    assert response.status_code == 200 and "thumbs is not one of the available choices" in (
        response.content.decode()
    )


def test_it_shows_agreement_on_good_and_bad(client: Client, alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=2, k=1, overlap=2, ask_scores=True)
    verdicts = {alice: ["good", "bad"], bob: ["good", "good"]}
    for user, given in verdicts.items():
        for verdict in given:
            claim = claim_next(queue, user)
            services.ranking_submit(
                assignment_id=claim.pk,
                user=user,
                submission=services.Submission(
                    order=[[_answer(claim)]],
                    verdict=verdict,
                    scores={str(_answer(claim)): 7 if verdict == "good" else 1},
                ),
            )
    client.force_login(carol)
    body = client.get(f"/labeling/queues/{queue.pk}/dashboard/").content.decode()
    # The same task order for both: one task agreed, one not.
    assert "Agreement on good/bad: <strong>50%</strong>" in body
    assert "Krippendorff&#x27;s α (good/bad)" in body or "Krippendorff's α (good/bad)" in body
    assert 'id="stat-score-alpha"' in body
    assert "on 2 tasks labeled by two or more annotators" in body


def test_it_finds_and_shows_single_answers_by_verdict(client: Client, alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=2, overlap=2)
    for user, verdict in ((alice, "good"), (bob, "bad")):
        while (claim := services.task_claim_next(queue=queue, user=user)) is not None:
            services.ranking_submit(
                assignment_id=claim.pk,
                user=user,
                submission=services.Submission(order=[[_answer(claim)]], verdict=verdict),
            )
    client.force_login(carol)

    response = client.get("/labeling/search/", {"verdict": "bad"})
    rows = response.context["rows"]
    assert {row.label.annotator.username for row in rows} == {"bob"} and len(rows) == 2
    assert {row.order for row in rows} == {"A bad"}
    # Each answer was judged by both: they disagree on every one.
    low = client.get("/labeling/search/", {"max_agreement": "0.5"}).context["rows"]
    assert len(low) == 4
    assert client.get("/labeling/search/", {"verdict": "meh"}).status_code == 200
    review = client.get(f"/labeling/queues/{queue.pk}/review/").content.decode()
    assert "A good" in review and "A bad" in review
