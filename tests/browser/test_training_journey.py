"""An admin launches a DPO run, watches its curves fill in, and samples from the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.training.factories import labeled_snapshot, tiny_policy
from training.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.celery_worker]


def test_it_trains_dpo_from_the_browser_and_samples_the_result(  # type: ignore[no-untyped-def]
    page, live_server, celery_worker, carol, settings, tiny_model_path: Path, tmp_path: Path
) -> None:
    settings.PREFLAB_DATA_DIR = tmp_path  # the run's checkpoints and final model
    base = tiny_policy(tiny_model_path, name="tiny-base")
    snapshot = labeled_snapshot(prompts=3, k=2, name="Three pairs")
    login(page, live_server, "carol", PASSWORD)

    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="Training", exact=True).click()
    page.get_by_role("link", name="New run").click()
    page.wait_for_load_state("load")  # htmx is attached by then
    # Changing the kind swaps the settings fieldset in place (htmx).
    page.select_option("select[name=kind]", "sft")
    page.wait_for_selector("#kind-fields[data-kind=sft] [name=completion_only_loss]")
    page.select_option("select[name=kind]", "dpo")
    page.wait_for_selector("#kind-fields[data-kind=dpo] [name=beta]")
    page.select_option("select[name=base_model]", label="tiny-base")
    page.select_option("select[name=snapshot]", label="Three pairs")
    page.fill("input[name=name]", "browser DPO")
    page.fill("input[name=max_steps]", "3")
    page.fill("input[name=logging_steps]", "1")
    page.fill("input[name=max_length]", "64")
    page.fill("input[name=batch_size]", "2")
    page.get_by_role("button", name="Launch").click()

    page.wait_for_selector("h1:has-text('browser DPO')")
    run = TrainingRun.objects.get()
    assert (run.kind, run.base_model, run.snapshot) == ("dpo", base, snapshot)
    assert run.config["max_steps"] == 3 and run.config["max_length"] == 64
    # htmx polls the status until the worker is done; training.js polls the curves.
    page.wait_for_selector("#run-status .badge.status-succeeded", timeout=300_000)
    page.wait_for_selector("#chart-loss canvas", timeout=15_000)
    assert "3</strong> / 3" in page.inner_html("#run-steps")
    run.refresh_from_db()
    assert run.output_model is not None and run.output_model.parent == base

    page.get_by_role("link", name="Sample from this model").click()
    page.wait_for_url(f"**/generation/jobs/?model={run.output_model.pk}*")
    assert page.input_value("select[name=model]") == str(run.output_model.pk)
