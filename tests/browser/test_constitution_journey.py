"""An admin writes a queue's constitution, starts a model labeling by it, and reads its
agreement with the humans on the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import login
from tests.conftest import wait_for
from tests.factories import PASSWORD
from tests.labeling.factories import label_queue, make_queue
from tests.training.factories import tiny_policy
from training.models import ConstitutionLabeler, PrincipleSet

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.celery_worker]


def test_an_admin_labels_a_queue_by_its_constitution(  # type: ignore[no-untyped-def]
    page, live_server, celery_worker, alice, bob, carol, tiny_model_path: Path
) -> None:
    queue = make_queue(mode="pairwise", prompts=2, k=2, overlap=2)
    for human in (alice, bob):
        label_queue(queue, human, lambda ids: [[ids[0]], [ids[1]]])
    tiny_policy(tiny_model_path, name="tiny-judge")
    login(page, live_server, "carol", PASSWORD)

    page.goto(f"{live_server.url}/labeling/queues/{queue.pk}/dashboard/")
    section = page.locator("#constitution")
    section.locator("input[name=name]").fill("HHH")
    section.locator("textarea[name=text]").fill("Which response is more <b>helpful</b>?")
    section.get_by_role("button", name="Save principles").click()
    page.wait_for_selector("#principles-current:has-text('HHH v1')")
    assert PrincipleSet.objects.get().text == "Which response is more <b>helpful</b>?"

    section = page.locator("#constitution")
    section.locator("select[name=judge_model]").select_option(label="tiny-judge")
    section.get_by_role("button", name="Label by HHH v1").click()
    wait_for(lambda: ConstitutionLabeler.objects.filter(status="succeeded").exists(), 120)

    page.reload()
    row = page.locator("#ai-agreement tbody tr")
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "ai:tiny-judge judging by HHH v1"
    assert cells[1:5] == ["HHH v1", "succeeded", "2", "0"]
    assert cells[5].endswith("/2)")  # the humans agree on both pairs: two units counted
    # The principles are shown as text, never as markup.
    assert page.locator("#constitution textarea b").count() == 0
    assert "<b>helpful</b>" in page.input_value("#constitution textarea[name=text]")

    # On a phone the dashboard's tables scroll inside their boxes; the page does not spill over.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
