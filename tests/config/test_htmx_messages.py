"""Flash messages raised by an htmx action show in its answer, never on a later page."""

from __future__ import annotations

from django.test import Client

from tests.generation.factories import GenerationJobFactory


def test_it_sends_an_htmx_actions_message_out_of_band(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running")
    client.force_login(carol)
    response = client.post(f"/generation/jobs/{job.pk}/cancel/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert 'id="job-progress"' in body  # the fragment itself
    assert '<div id="messages" class="messages" hx-swap-oob="true">' in body
    assert "Cancelling after the current batch." in body


def test_it_does_not_show_an_htmx_message_again_on_the_next_page(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running")
    client.force_login(carol)
    client.post(f"/generation/jobs/{job.pk}/cancel/", headers={"HX-Request": "true"})
    later = client.get("/generation/jobs/").content.decode()
    assert "Cancelling after the current batch." not in later
    assert '<div id="messages" class="messages">' in later  # the empty target stays on the page


def test_it_keeps_a_message_for_the_page_a_plain_post_redirects_to(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running")
    client.force_login(carol)
    response = client.post(f"/generation/jobs/{job.pk}/cancel/", follow=True)
    body = response.content.decode()
    assert "Cancelling after the current batch." in body and "hx-swap-oob" not in body


def test_it_leaves_fragments_without_messages_untouched(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running")
    client.force_login(carol)
    body = client.get(job.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert 'id="job-progress"' in body and 'id="messages"' not in body
