"""Every bad-input case of issue #13: a 4xx naming the field, never a 500, on SQLite and on
PostgreSQL (run this file with DATABASE_URL=postgres://... too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation.models import GenerationJob
from labeling.models import DatasetSnapshot, LabelingQueue, Ranking
from tests.generation.factories import PolicyModelFactory, prompt_set_with_prompts
from tests.labeling.factories import finished_job, make_queue
from tests.training.factories import labeled_snapshot, tiny_policy
from training.models import Evaluation, TrainingRun

HUGE = 10**30
pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _field_error(response, field: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body or body.get("field") == field, body


# --- seeds -----------------------------------------------------------------------------------


def test_it_rejects_a_huge_seed_on_job_creation(carol) -> None:  # type: ignore[no-untyped-def]
    body = {"prompt_set": prompt_set_with_prompts(2).pk, "model": PolicyModelFactory().pk}
    _field_error(
        _api(carol).post("/api/generation/jobs/", body | {"seed": HUGE}, format="json"), "seed"
    )
    _field_error(
        _api(carol).post("/api/generation/jobs/", body | {"seed": -1}, format="json"), "seed"
    )
    assert not GenerationJob.objects.exists()


def test_it_rejects_a_huge_seed_in_the_job_form(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/generation/jobs/",
        {
            "prompt_set": prompt_set_with_prompts(2).pk,
            "model": PolicyModelFactory().pk,
            "k": 2,
            "temperature": 1,
            "top_p": 1,
            "max_new_tokens": 8,
            "seed": HUGE,
            "batch_size": 2,
        },
    )
    assert response.status_code == 200 and b"less than or equal to 4294967295" in response.content
    assert not GenerationJob.objects.exists()


def test_it_rejects_a_huge_seed_on_snapshot_creation(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    body = {"name": "s", "queues": [queue.pk], "seed": HUGE}
    _field_error(_api(dave).post("/api/labeling/snapshots/", body, format="json"), "seed")
    client.force_login(dave)
    response = client.post(
        "/labeling/snapshots/",
        {
            "name": "s",
            "queues": [queue.pk],
            "aggregation": "all",
            "ties": "drop",
            "min_agreement": 0,
            "eval_fraction": 0.1,
            "seed": HUGE,
        },
    )
    assert response.status_code < 500 and b"less than or equal to" in response.content
    assert not DatasetSnapshot.objects.exists()


def test_it_rejects_a_huge_seed_on_evaluation_creation(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    models = [PolicyModelFactory(), PolicyModelFactory()]
    prompts = prompt_set_with_prompts(2)
    body = {"name": "e", "models": [m.pk for m in models], "prompt_set": prompts.pk, "seed": HUGE}
    _field_error(_api(carol).post("/api/training/evaluations/", body, format="json"), "seed")
    client.force_login(carol)
    form = body | {"max_new_tokens": 8, "temperature": 0.5, "overlap": 1}
    response = client.post("/training/evaluations/", form)
    assert response.status_code < 500 and b"less than or equal to" in response.content
    assert not Evaluation.objects.exists()


def test_it_rejects_a_huge_seed_in_the_queue_form(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/labeling/queues/new/",
        {
            "name": "q",
            "jobs": [finished_job(prompts=2, k=2).pk],
            "mode": "pairwise",
            "overlap": 1,
            "pairs_per_prompt": 1,
            "lease_minutes": 10,
            "seed": HUGE,
        },
    )
    assert response.status_code < 500 and b"less than or equal to" in response.content
    assert not LabelingQueue.objects.exists()


# --- ids ---------------------------------------------------------------------------------------


def test_it_rejects_a_huge_id_in_a_query_string(dave) -> None:  # type: ignore[no-untyped-def]
    _field_error(_api(dave).get(f"/api/training/scorings/?job={HUGE}"), "job")
    _field_error(_api(dave).get("/api/training/scorings/?job=abc"), "job")
    assert _api(dave).get("/api/training/scorings/?job=7").status_code == 200


def test_it_rejects_a_huge_queue_filter(alice) -> None:  # type: ignore[no-untyped-def]
    _field_error(_api(alice).get(f"/api/labeling/rankings/?queue={HUGE}"), "queue")
    _field_error(_api(alice).get(f"/api/labeling/comparisons/?queue={HUGE}"), "queue")


def test_it_answers_a_huge_id_in_a_path_or_body_without_a_500(carol, alice) -> None:  # type: ignore[no-untyped-def]
    for url in (f"/api/generation/jobs/{HUGE}/", f"/api/training/runs/{HUGE}/"):
        assert _api(carol).get(url).status_code in (400, 404)
    assert _api(alice).post(f"/api/labeling/queues/{HUGE}/next/").status_code in (400, 404)
    body = {"prompt_set": HUGE, "model": HUGE}
    response = _api(carol).post("/api/generation/jobs/", body, format="json")
    _field_error(response, "prompt_set")
    after = _api(carol).get(f"/api/training/runs/1/metrics/?after={HUGE}")
    assert after.status_code in (400, 404)


# --- invalid characters and types ------------------------------------------------------------

JOB_IMPORT = '{"prompt": "Hi", "completions": ["Hello", "Hey"], "model": "m"}\n'


def test_it_rejects_a_nul_character_in_an_import_name(carol) -> None:  # type: ignore[no-untyped-def]
    body = {"content": JOB_IMPORT, "format": "jsonl", "name": "bad\x00name"}
    _field_error(_api(carol).post("/api/generation/jobs/import/", body, format="json"), "name")
    prefs = {"content": "{}", "format": "trl", "name": "x\x00"}
    _field_error(
        _api(carol).post("/api/labeling/preferences/import/", prefs, format="json"), "name"
    )
    assert not GenerationJob.objects.exists()


def test_it_rejects_a_prompt_set_that_is_not_an_id(carol) -> None:  # type: ignore[no-untyped-def]
    body = {"content": JOB_IMPORT, "format": "jsonl", "prompt_set": "abc"}
    _field_error(
        _api(carol).post("/api/generation/jobs/import/", body, format="json"), "prompt_set"
    )
    ok = _api(carol).post(
        "/api/generation/jobs/import/", body | {"prompt_set": None}, format="json"
    )
    assert ok.status_code == 201, ok.content


def test_it_rejects_a_file_sent_as_a_json_string(carol) -> None:  # type: ignore[no-untyped-def]
    body = {"file": "not a file", "format": "trl"}
    _field_error(_api(carol).post("/api/labeling/preferences/import/", body, format="json"), "file")


# --- the API validates what the forms validate -----------------------------------------------


def _claim(api: APIClient, queue: LabelingQueue) -> dict:  # type: ignore[type-arg]
    return api.post(f"/api/labeling/queues/{queue.pk}/next/").json()  # type: ignore[no-any-return]


def test_it_caps_comments_and_ideal_responses_as_the_form_does(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    api = _api(alice)
    task = _claim(api, queue)
    order = [[c["id"]] for c in task["completions"]]
    url = f"/api/labeling/queues/{queue.pk}/submit/"
    base = {"assignment": task["assignment"], "order": order}
    _field_error(api.post(url, base | {"comment": "x" * 5001}, format="json"), "comment")
    _field_error(
        api.post(url, base | {"demonstration": "x" * 20001}, format="json"), "demonstration"
    )
    _field_error(api.post(url, base | {"flags": ["nonsense"]}, format="json"), "flags")
    assert not Ranking.objects.exists()
    ok = api.post(url, base | {"comment": "x" * 5000, "demonstration": "y" * 20000}, format="json")
    assert ok.status_code == 201, ok.content


def test_it_rejects_out_of_range_scores_in_the_api(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=2, ask_scores=True)
    api = _api(alice)
    task = _claim(api, queue)
    ids = [c["id"] for c in task["completions"]]
    body = {"assignment": task["assignment"], "order": [[i] for i in ids]}
    url = f"/api/labeling/queues/{queue.pk}/submit/"
    _field_error(api.post(url, body | {"scores": {str(ids[0]): -3}}, format="json"), "scores")
    _field_error(api.post(url, body | {"scores": {str(ids[0]): 8}}, format="json"), "scores")
    assert not Ranking.objects.exists()


def test_it_refuses_an_out_of_range_score_in_the_form_instead_of_dropping_it(
    client: Client, alice
) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=2, ask_scores=True)
    client.force_login(alice)
    client.get(f"/labeling/queues/{queue.pk}/")
    assignment = alice.assignments.get()
    post = {"assignment": assignment.pk, "choice": "rank", "rank_A": 1, "rank_B": 2}
    for bad in ("-3", "8", "seven"):
        response = client.post(
            f"/labeling/queues/{queue.pk}/submit/", post | {"score_A": bad}, follow=True
        )
        assert response.status_code == 200
        assert b"scores" in response.content
        assert not Ranking.objects.exists()


# --- training budgets ---------------------------------------------------------------------------


def test_it_bounds_training_budgets(carol, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "weights"
    folder.mkdir()
    base = tiny_policy(folder)
    snapshot = labeled_snapshot(prompts=2, k=3, name="prefs")
    api = _api(carol)
    for name, value in (("num_epochs", 10**6), ("max_steps", 10**9), ("seed", HUGE)):
        body = {
            "kind": "dpo",
            "base_model": base.pk,
            "snapshot": snapshot.pk,
            "config": {name: value},
        }
        response = api.post("/api/training/runs/", body, format="json")
        assert response.status_code == 400, (name, response.content)
        assert response.json()["field"] == name
    assert not TrainingRun.objects.exists()


def test_it_rejects_lone_surrogates_and_nul_anywhere_in_json(carol, alice) -> None:  # type: ignore[no-untyped-def]
    raw = '{"content": "x", "format": "jsonl", "name": "bad \\ud800 name"}'
    response = _api(carol).post(
        "/api/generation/jobs/import/", raw, content_type="application/json"
    )
    _field_error(response, "name")
    queue = make_queue(mode="pairwise", k=2)
    api = _api(alice)
    task = _claim(api, queue)
    body = {
        "assignment": task["assignment"],
        "order": [[c["id"]] for c in task["completions"]],
        "scores": {"\x00": 3},
    }
    raw = json.dumps(body)  # the NUL travels as the JSON escape \u0000
    response = api.post(
        f"/api/labeling/queues/{queue.pk}/submit/", raw, content_type="application/json"
    )
    _field_error(response, "scores")
    assert not Ranking.objects.exists()


# --- single-answer labels -----------------------------------------------------------------------


def test_it_names_the_field_of_a_bad_single_answer_label(alice) -> None:  # type: ignore[no-untyped-def]
    single = make_queue(mode="single", k=1, ask_scores=True)
    api = _api(alice)
    task = _claim(api, single)
    url = f"/api/labeling/queues/{single.pk}/submit/"
    base = {"assignment": task["assignment"]}
    _field_error(api.post(url, base | {"verdict": "good", "score": 0}, format="json"), "score")
    _field_error(api.post(url, base | {"verdict": "good", "score": 8}, format="json"), "score")
    _field_error(api.post(url, base | {"verdict": "good", "score": "x"}, format="json"), "score")
    _field_error(
        api.post(url, base | {"verdict": "good", "scores": {"A": 9}}, format="json"), "scores"
    )
    _field_error(api.post(url, base | {"verdict": "meh"}, format="json"), "verdict")
    _field_error(api.post(url, base | {"verdict": ""}, format="json"), "verdict")
    _field_error(api.post(url, base | {"order": [["A"]]}, format="json"), "verdict")
    _field_error(api.post(url, base, format="json"), "verdict")  # nothing at all
    _field_error(
        api.post(url, base | {"verdict": "bad", "both_bad": True}, format="json"), "both_bad"
    )
    assert not Ranking.objects.exists()
    ok = api.post(url, base | {"verdict": "good", "score": 7}, format="json")
    assert ok.status_code == 201, ok.content


def test_it_names_the_field_of_a_label_in_the_wrong_mode(alice) -> None:  # type: ignore[no-untyped-def]
    pairwise = make_queue(mode="pairwise", k=2, ask_scores=True)
    api = _api(alice)
    task = _claim(api, pairwise)
    url = f"/api/labeling/queues/{pairwise.pk}/submit/"
    base = {"assignment": task["assignment"]}
    _field_error(api.post(url, base | {"verdict": "good"}, format="json"), "order")
    _field_error(api.post(url, base, format="json"), "order")
    order = [["A"], ["B"]]
    _field_error(
        api.post(url, base | {"order": order, "verdict": "good"}, format="json"), "verdict"
    )
    _field_error(api.post(url, base | {"order": order, "score": 3}, format="json"), "score")
    assert not Ranking.objects.exists()
