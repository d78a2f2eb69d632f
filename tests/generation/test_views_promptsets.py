from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from generation.models import Prompt, PromptSet
from tests.generation.factories import prompt_set_with_prompts


def test_it_creates_a_set_and_imports_a_file(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    upload = SimpleUploadedFile("p.csv", b"id,prompt\n1,Once upon a\n2,Hello there\n")
    response = client.post(
        "/generation/prompt-sets/",
        {"name": "csv set", "format": "auto", "file": upload},
        follow=True,
    )
    prompt_set = PromptSet.objects.get(name="csv set")
    assert response.redirect_chain[-1][0] == prompt_set.get_absolute_url()
    assert b"Imported 2 prompts" in response.content
    assert list(prompt_set.prompts.values_list("text", flat=True)) == ["Once upon a", "Hello there"]


def test_it_keeps_nothing_when_the_new_sets_file_is_bad(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "ok"}\nnot json\n')
    response = client.post(
        "/generation/prompt-sets/", {"name": "bad", "format": "auto", "file": upload}
    )
    assert response.status_code == 200
    assert b"line 2" in response.content
    assert not PromptSet.objects.exists()


def test_it_shows_the_line_of_a_bad_import(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(2)
    client.force_login(carol)
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "ok"}\n{"prompt": 5}\n')
    response = client.post(prompt_set.get_absolute_url(), {"format": "jsonl", "file": upload})
    assert response.status_code == 200
    assert b"Nothing was imported" in response.content and b"line 2" in response.content
    assert Prompt.objects.filter(prompt_set=prompt_set).count() == 2


def test_it_escapes_prompts(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(0)
    Prompt.objects.create(
        prompt_set=prompt_set, position=0, text="<b onmouseover=x>hi</b>", content_hash="h"
    )
    client.force_login(carol)
    body = client.get(prompt_set.get_absolute_url()).content.decode()
    assert "<b onmouseover" not in body and "&lt;b onmouseover=x&gt;" in body


def test_it_hides_sets_from_annotators(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(1)
    client.force_login(alice)
    assert client.get(prompt_set.get_absolute_url()).status_code == 403


def test_it_lets_researchers_read_but_not_import(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(1)
    client.force_login(dave)
    assert client.get(prompt_set.get_absolute_url()).status_code == 200
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "new"}\n')
    assert (
        client.post(prompt_set.get_absolute_url(), {"format": "jsonl", "file": upload}).status_code
        == 403
    )
    assert Prompt.objects.filter(prompt_set=prompt_set).count() == 1
