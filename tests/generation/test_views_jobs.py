from __future__ import annotations

import pytest
from django.test import Client

from generation.models import GenerationJob
from tests.generation.factories import (
    CompletionFactory,
    GenerationJobFactory,
    PolicyModelFactory,
    prompt_set_with_prompts,
)


def test_it_queues_a_job_from_the_form(
    client: Client,
    carol,
    django_capture_on_commit_callbacks,  # type: ignore[no-untyped-def]
) -> None:
    prompt_set = prompt_set_with_prompts(3)
    model = PolicyModelFactory()
    client.force_login(carol)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/generation/jobs/",
            {
                "prompt_set": prompt_set.pk,
                "model": model.pk,
                "k": 4,
                "temperature": 0.7,
                "top_p": 0.9,
                "max_new_tokens": 16,
                "seed": 3,
                "stop": "\\n\\nHuman:\n###",
                "batch_size": 2,
            },
        )
    job = GenerationJob.objects.get()
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert (job.k, job.prompts_total, job.stop, job.status) == (
        4,
        3,
        ["\n\nHuman:", "###"],
        "queued",
    )
    assert len(callbacks) == 1  # the task is sent only after the transaction commits


def test_it_rejects_an_empty_prompt_set(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    empty = prompt_set_with_prompts(0)
    client.force_login(carol)
    response = client.post(
        "/generation/jobs/",
        {
            "prompt_set": empty.pk,
            "model": PolicyModelFactory().pk,
            "k": 4,
            "temperature": 1,
            "top_p": 1,
            "max_new_tokens": 8,
            "seed": 0,
            "batch_size": 8,
        },
    )
    assert response.status_code == 200
    assert b"has no prompts" in response.content
    assert not GenerationJob.objects.exists()


def test_it_renders_the_progress_partial_for_htmx(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running", prompts_total=10, prompts_done=4)
    client.force_login(carol)
    partial = client.get(job.get_absolute_url(), headers={"HX-Request": "true"})
    assert partial.status_code == 200
    body = partial.content.decode()
    assert "<html" not in body and 'id="job-progress"' in body
    assert 'hx-trigger="every 1s"' in body and "width: 40%" in body
    full = client.get(job.get_absolute_url())
    assert "<html" in full.content.decode()


def test_it_stops_polling_when_the_job_finished(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="succeeded", prompts_total=2, prompts_done=2)
    client.force_login(carol)
    body = client.get(job.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in body


def test_it_reloads_the_page_when_the_watched_job_ends(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running", prompts_total=2, prompts_done=1)
    client.force_login(carol)
    polling = client.get(job.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert f'hx-get="{job.get_absolute_url()}?poll=1"' in polling
    running = client.get(f"{job.get_absolute_url()}?poll=1", headers={"HX-Request": "true"})
    assert running.status_code == 200 and "HX-Refresh" not in running.headers
    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded", prompts_done=2)
    ended = client.get(f"{job.get_absolute_url()}?poll=1", headers={"HX-Request": "true"})
    # The whole page reloads with its completions instead of "No completions yet".
    assert ended.headers["HX-Refresh"] == "true"
    assert "Reload to see" not in client.get(job.get_absolute_url()).content.decode()


def test_it_escapes_model_output(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    completion = CompletionFactory(text='<script>alert("x")</script><img src=x onerror=alert(1)>')
    client.force_login(carol)
    body = client.get(completion.job.get_absolute_url()).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def test_it_cancels_a_queued_job(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory()
    client.force_login(carol)
    assert client.get(f"/generation/jobs/{job.pk}/cancel/").status_code == 405
    response = client.post(f"/generation/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_it_flags_a_running_job_for_cancellation(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running")
    client.force_login(carol)
    response = client.post(f"/generation/jobs/{job.pk}/cancel/", headers={"HX-Request": "true"})
    assert response.status_code == 200 and b"cancelling after this batch" in response.content
    job.refresh_from_db()
    assert job.status == "running" and job.cancel_requested


def test_it_refuses_to_resume_a_succeeded_job(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="succeeded")
    client.force_login(carol)
    response = client.post(f"/generation/jobs/{job.pk}/resume/", follow=True)
    assert b"cannot be resumed" in response.content
    job.refresh_from_db()
    assert job.status == "succeeded"


@pytest.mark.parametrize("path", ["/generation/jobs/", "/generation/jobs/{pk}/"])
def test_it_hides_jobs_from_annotators(client: Client, alice, path: str) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory()
    client.force_login(alice)
    assert client.get(path.format(pk=job.pk)).status_code == 403


def test_it_lets_researchers_watch_but_not_cancel(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running")
    client.force_login(dave)
    assert client.get(job.get_absolute_url()).status_code == 200
    assert client.post(f"/generation/jobs/{job.pk}/cancel/").status_code == 403
