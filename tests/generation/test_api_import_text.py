"""Imports over the API keep text byte for byte, and refuse what cannot be stored with a 400
naming the line (NUL, which PostgreSQL text cannot hold, and lone surrogates), never a 500."""

from __future__ import annotations

import json
import unicodedata

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation.models import GenerationJob, Prompt, PromptSet
from labeling.models import Comparison, LabelingQueue
from tests.generation.factories import prompt_set_with_prompts


def _client(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


NFC = unicodedata.normalize("NFC", "Café  au lait")
NFD = unicodedata.normalize("NFD", "Café  au lait")


def test_it_imports_prompts_byte_for_byte_over_the_api(carol) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(0)
    texts = [NFC, NFD, " Café au lait\n", "Café au lait", NFC]
    upload = SimpleUploadedFile(
        "prompts.jsonl",
        "".join(json.dumps({"prompt": t}, ensure_ascii=False) + "\n" for t in texts).encode(),
    )
    api = _client(carol)
    response = api.post(
        f"/api/generation/prompt-sets/{prompt_set.pk}/import/",
        {"file": upload, "format": "jsonl"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 4, "skipped_duplicates": 1}
    listed = api.get(f"/api/generation/prompt-sets/{prompt_set.pk}/prompts/").json()
    assert [p["text"].encode() for p in listed["results"]] == [t.encode() for t in texts[:4]]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"prompt": "ok"}\n{"prompt": "a\\u0000b"}\n', "'prompt' contains a NUL character"),
        (
            '{"prompt": "ok"}\n{"messages": [{"role": "user", "content": "\\udc00"}]}\n',
            "'messages[0]' contains a lone surrogate",
        ),
    ],
)
def test_it_refuses_unstorable_prompt_text_with_a_400(carol, content: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(0)
    response = _client(carol).post(
        f"/api/generation/prompt-sets/{prompt_set.pk}/import/",
        {"content": content, "format": "jsonl"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["line"] == 2 and problem in response.json()["detail"]
    assert not Prompt.objects.exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"content": '{"prompt": "q", "completions": ["a\\u0000"]}', "name": "x"},
            "'completions[0]' contains a NUL character",
        ),
        ({"content": '{"prompt": "q", "completions": ["a"]}', "name": "x\x00"}, "NUL character"),
        ({"content": '{"prompt": "q", "completions": ["a"]}', "name": "x\ud800"}, "surrogate"),
    ],
)
def test_it_refuses_an_unstorable_completion_import_with_a_400(carol, body, problem) -> None:  # type: ignore[no-untyped-def]
    # json.dumps writes "\ud800" as an escape, which the server decodes to a lone surrogate.
    response = _client(carol).post(
        "/api/generation/jobs/import/",
        json.dumps({**body, "format": "jsonl"}),
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert problem in response.json()["detail"]
    assert not GenerationJob.objects.exists() and not PromptSet.objects.exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"content": '{"chosen": "Q? a", "rejected": "Q? b\\u0000"}', "name": "x"},
            "line 1: 'rejected' contains a NUL character",
        ),
        (
            {
                "content": '{"chosen": "\\n\\nHuman: \\ud800\\n\\nAssistant: a", "rejected": "b"}',
                "format": "hh",
                "name": "x",
            },
            "line 1: 'chosen' contains a lone surrogate",
        ),
        ({"content": '{"chosen": "Q? a", "rejected": "Q? b"}', "name": "x\ud800"}, "surrogate"),
    ],
)
def test_it_refuses_an_unstorable_preference_import_with_a_400(carol, body, problem) -> None:  # type: ignore[no-untyped-def]
    response = _client(carol).post(
        "/api/labeling/preferences/import/",
        json.dumps({"format": "trl", **body}),
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert problem in response.json()["detail"]
    assert not LabelingQueue.objects.exists() and not Comparison.objects.exists()


def test_it_imports_an_implicit_prompt_trl_file_over_the_api(carol) -> None:  # type: ignore[no-untyped-def]
    row = {
        "chosen": [{"role": "user", "content": NFD}, {"role": "assistant", "content": " Oui "}],
        "rejected": [{"role": "user", "content": NFD}, {"role": "assistant", "content": "Non"}],
    }
    response = _client(carol).post(
        "/api/labeling/preferences/import/",
        {"content": json.dumps(row), "format": "trl", "name": "implicit"},
        format="json",
    )
    assert response.status_code == 201, response.content
    comparison = Comparison.objects.select_related("prompt", "chosen", "rejected").get()
    assert comparison.prompt.messages == [{"role": "user", "content": NFD}]
    assert (comparison.chosen.text, comparison.rejected.text) == (" Oui ", "Non")


def test_it_keeps_a_jobs_stop_strings_exactly(carol, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    from tests.generation.factories import PolicyModelFactory

    with django_capture_on_commit_callbacks(execute=False):
        response = _client(carol).post(
            "/api/generation/jobs/",
            {
                "prompt_set": prompt_set_with_prompts(1).pk,
                "model": PolicyModelFactory().pk,
                "stop": ["\n\nHuman:", " ###"],
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    assert GenerationJob.objects.get().stop == ["\n\nHuman:", " ###"]
