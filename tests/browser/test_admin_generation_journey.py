"""An admin imports prompts, registers the tiny model, launches k=4 and watches it fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.models import Completion, GenerationJob
from tests.browser.conftest import login
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.celery_worker]


def test_it_runs_the_admin_generation_journey(  # type: ignore[no-untyped-def]
    page, live_server, celery_worker, carol, tiny_model_path: Path, tmp_path: Path
) -> None:
    login(page, live_server, "carol", PASSWORD)

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"prompt": "Once upon a"}\n{"prompt": "<script>window.pwned=1</script>Tell a joke"}\n'
        '{"messages": [{"role": "user", "content": "Hi!"}]}\n'
    )
    page.goto(f"{live_server.url}/generation/prompt-sets/")
    page.fill("input[name=name]", "Browser prompts")
    page.set_input_files("input[name=file]", str(prompts))
    page.get_by_role("button", name="Create").click()
    page.wait_for_selector("text=Imported 3 prompts")

    page.goto(f"{live_server.url}/generation/models/")
    page.fill("input[name=name]", "tiny-browser")
    page.select_option("select[name=backend]", "transformers")
    page.fill("input[name=source]", str(tiny_model_path))
    page.get_by_role("button", name="Register").click()
    page.wait_for_selector("h1:has-text('tiny-browser')")

    page.get_by_role("link", name="Sample from this model").click()
    page.select_option("select[name=prompt_set]", label="Browser prompts")
    page.fill("input[name=k]", "4")
    page.fill("input[name=max_new_tokens]", "8")
    page.get_by_role("button", name="Launch").click()
    page.wait_for_selector("#job-progress")
    # htmx polls the progress partial until the worker has finished the job.
    page.wait_for_selector("#job-progress .badge.status-succeeded", timeout=120_000)
    assert "3 / 3" in page.inner_text("#job-progress")

    job = GenerationJob.objects.get()
    assert Completion.objects.filter(job=job).count() == 12
    page.reload()
    assert page.locator("article.card").count() == 3
    assert page.evaluate("window.pwned") is None  # the prompt's script was shown, not run
    assert "<script>window.pwned=1</script>" in page.inner_text("main")
