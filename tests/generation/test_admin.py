"""Prompt and completion texts are read-only in the Django admin: labels point to them."""

from __future__ import annotations

import pytest
from django.test import Client

from generation.models import Completion, GenerationJob, Prompt
from tests.factories import UserFactory
from tests.generation.factories import CompletionFactory, GenerationJobFactory, PromptSetFactory


@pytest.fixture
def staff_client(db) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize(
    ("model", "text"), [("prompt", "  Café  <b>\n"), ("completion", " Once  upon\n")]
)
def test_it_shows_the_text_but_never_changes_it(
    staff_client: Client, model: str, text: str
) -> None:
    completion = CompletionFactory(text=" Once  upon\n", prompt__text="  Café  <b>\n")
    obj = completion.prompt if model == "prompt" else completion
    url = f"/admin/generation/{model}/{obj.pk}/change/"
    page = staff_client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="text"' not in body  # no form field: the text is shown read-only
    assert "Café  &lt;b&gt;" in body or "Once  upon" in body
    changed = staff_client.post(url, {"text": "rewritten", "position": 0, "sample_index": 0})
    assert changed.status_code == 403
    assert staff_client.get(f"/admin/generation/{model}/add/").status_code == 403
    assert (
        staff_client.post(
            f"/admin/generation/{model}/{obj.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    stored = Prompt.objects.get(pk=completion.prompt_id), Completion.objects.get(pk=completion.pk)
    assert (stored[0].text, stored[1].text) == ("  Café  <b>\n", " Once  upon\n")


def test_it_offers_no_bulk_delete_of_texts(staff_client: Client) -> None:
    completion = CompletionFactory()
    for model in ("prompt", "completion"):
        listing = staff_client.get(f"/admin/generation/{model}/")
        assert listing.status_code == 200
        assert "delete_selected" not in listing.content.decode()
    assert Completion.objects.filter(pk=completion.pk).exists()


def test_it_deletes_only_empty_prompt_sets_and_jobs(staff_client: Client) -> None:
    completion = CompletionFactory()
    job, prompt_set = completion.job, completion.prompt.prompt_set
    empty_job = GenerationJobFactory(prompt_set=PromptSetFactory())
    for url in (
        f"/admin/generation/generationjob/{job.pk}/delete/",
        f"/admin/generation/promptset/{prompt_set.pk}/delete/",
    ):
        assert staff_client.post(url, {"post": "yes"}).status_code == 403
    for model in ("generationjob", "promptset"):
        assert (
            "delete_selected"
            not in staff_client.get(f"/admin/generation/{model}/").content.decode()
        )
    assert Completion.objects.filter(pk=completion.pk).exists()
    url = f"/admin/generation/generationjob/{empty_job.pk}/delete/"
    assert staff_client.post(url, {"post": "yes"}).status_code == 302
    assert not GenerationJob.objects.filter(pk=empty_job.pk).exists()
