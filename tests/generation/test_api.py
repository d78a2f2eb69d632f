from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation.models import Completion, GenerationJob, PolicyModel, Prompt
from tests.factories import PASSWORD
from tests.generation.factories import (
    GenerationJobFactory,
    PolicyModelFactory,
    prompt_set_with_prompts,
)


def _client(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_it_issues_a_token_for_username_and_password(carol) -> None:  # type: ignore[no-untyped-def]
    response = APIClient().post("/api/token/", {"username": "carol", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=carol).key


def test_it_requires_authentication(db) -> None:  # type: ignore[no-untyped-def]
    assert APIClient().get("/api/generation/models/").status_code == 401


def test_it_registers_and_lists_models(carol) -> None:  # type: ignore[no-untyped-def]
    api = _client(carol)
    created = api.post(
        "/api/generation/models/",
        {"name": "tiny", "backend": "transformers", "source": "org/tiny"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert [m["name"] for m in api.get("/api/generation/models/").json()["results"]] == ["tiny"]
    bad = api.post("/api/generation/models/", {"name": "x", "backend": "vllm"}, format="json")
    assert bad.status_code == 400 and "needs a source" in bad.json()["detail"]


def test_it_imports_prompts_from_json_content_and_multipart(carol) -> None:  # type: ignore[no-untyped-def]
    api = _client(carol)
    prompt_set = api.post("/api/generation/prompt-sets/", {"name": "api set"}, format="json").json()
    url = f"/api/generation/prompt-sets/{prompt_set['id']}/import/"
    content = '{"prompt": "Once upon a"}\n{"prompt": "Once upon a"}\n{"prompt": "Hello"}\n'
    first = api.post(url, {"content": content, "format": "jsonl"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json() == {"created": 2, "skipped_duplicates": 1}
    upload = SimpleUploadedFile("more.csv", b"prompt\nA new prompt\n", content_type="text/csv")
    second = api.post(url, {"file": upload}, format="multipart")
    assert second.status_code == 201 and second.json()["created"] == 1
    prompts = api.get(f"/api/generation/prompt-sets/{prompt_set['id']}/prompts/").json()
    assert [p["text"] for p in prompts["results"]] == ["Once upon a", "Hello", "A new prompt"]


def test_it_rejects_a_bad_line_and_imports_nothing(carol) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(0)
    content = '{"prompt": "fine"}\n{"prompt": "also fine"}\n{"prompt": \n'
    response = _client(carol).post(
        f"/api/generation/prompt-sets/{prompt_set.pk}/import/",
        {"content": content, "format": "jsonl"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["line"] == 3
    assert "line 3" in response.json()["detail"]
    assert not Prompt.objects.exists()


def test_it_launches_a_job_and_reports_it(carol, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(2)
    model = PolicyModelFactory()
    api = _client(carol)
    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(
            "/api/generation/jobs/",
            {"prompt_set": prompt_set.pk, "model": model.pk, "k": 4, "stop": ["###"]},
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["k"], body["status"], body["prompts_total"], body["stop"]) == (
        4,
        "queued",
        2,
        ["###"],
    )
    assert api.get(f"/api/generation/jobs/{body['id']}/").json()["id"] == body["id"]
    assert api.post(f"/api/generation/jobs/{body['id']}/cancel/").json()["status"] == "cancelled"
    conflict = api.post(f"/api/generation/jobs/{body['id']}/cancel/")
    assert conflict.status_code == 409


def test_it_validates_job_parameters(carol) -> None:  # type: ignore[no-untyped-def]
    response = _client(carol).post(
        "/api/generation/jobs/",
        {"prompt_set": prompt_set_with_prompts(1).pk, "model": PolicyModelFactory().pk, "k": 0},
        format="json",
    )
    assert response.status_code == 400 and "k" in response.json()


def test_it_imports_completions_as_a_finished_job(carol) -> None:  # type: ignore[no-untyped-def]
    lines = [
        {"prompt": "Say hi", "completions": ["hi", "hello", "hey"], "model": "gpt-x"},
        {"prompt": "Say bye", "completions": ["bye", "see you"]},
    ]
    content = "\n".join(json.dumps(line) for line in lines)
    response = _client(carol).post(
        "/api/generation/jobs/import/",
        {"content": content, "format": "jsonl", "name": "mine"},
        format="json",
    )
    assert response.status_code == 201, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert (job.status, job.source, job.k, job.prompts_total) == ("succeeded", "imported", 3, 2)
    assert Completion.objects.filter(job=job).count() == 5
    assert set(Completion.objects.filter(job=job).values_list("model_name", flat=True)) == {
        "gpt-x",
        "",
    }


def test_it_lists_completions(carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory()
    response = _client(carol).get(f"/api/generation/jobs/{job.pk}/completions/")
    assert response.status_code == 200 and response.json()["count"] == 0


@pytest.mark.parametrize(
    "path", ["/api/generation/models/", "/api/generation/jobs/", "/api/generation/prompt-sets/"]
)
def test_it_hides_generation_from_annotators(alice, path: str) -> None:  # type: ignore[no-untyped-def]
    assert _client(alice).get(path).status_code == 404


def test_it_lets_researchers_read_but_not_write(dave) -> None:  # type: ignore[no-untyped-def]
    api = _client(dave)
    assert api.get("/api/generation/jobs/").status_code == 200
    response = api.post(
        "/api/generation/models/",
        {"name": "x", "backend": "transformers", "source": "/m"},
        format="json",
    )
    assert response.status_code == 403
    assert not PolicyModel.objects.exists()
