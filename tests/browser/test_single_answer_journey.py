"""Single answers in a real browser: an admin creates a good/bad queue, an annotator judges
two answers with the keyboard (a score by digit, then g or b), on a phone-sized screen too."""

from __future__ import annotations

import pytest

from labeling.models import LabelingQueue, Ranking
from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.labeling.factories import finished_job

pytestmark = [pytest.mark.browser]


def test_an_admin_creates_a_single_answer_queue_and_an_annotator_judges_with_keys(
    page, live_server, carol, alice
) -> None:  # type: ignore[no-untyped-def]
    job = finished_job(prompts=1, k=3)
    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}/labeling/queues/new/")
    page.fill("input[name=name]", "Thumbs")
    page.select_option("select[name=jobs]", str(job.pk))
    page.select_option("select[name=mode]", "single")
    page.check("input[name=ask_scores]")
    page.get_by_role("button", name="Create").click()
    page.wait_for_selector("h1:has-text('Thumbs')")
    queue = LabelingQueue.objects.get(name="Thumbs")
    assert (queue.mode, queue.ask_scores, queue.tasks.count()) == ("single", True, 3)
    page.context.clear_cookies()

    login(page, live_server, "alice", PASSWORD)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{live_server.url}/labeling/queues/{queue.pk}/")
    page.wait_for_selector("#task[data-mode=single]")
    page.wait_for_load_state("load")  # the keyboard handler is attached by then
    assert page.locator("#task .candidate").count() == 1
    assert page.get_by_role("button", name="Good").is_visible()
    assert page.get_by_role("button", name="Bad").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing spills over

    first = page.input_value("input[name=assignment]")
    page.keyboard.press("6")
    assert page.input_value("select[name=score_A]") == "6"
    page.keyboard.press("g")
    page.wait_for_function(
        "prev => document.querySelector('input[name=assignment]')?.value !== prev", arg=first
    )
    page.keyboard.press("b")
    page.wait_for_selector("text=You: 2 done")

    given = list(Ranking.objects.filter(annotator=alice).order_by("id"))
    assert [r.verdict for r in given] == ["good", "bad"]
    assert list(given[0].scores.values()) == [6] and given[1].scores == {}
    assert all(len(r.order) == 1 and len(r.order[0]) == 1 for r in given)

    page.keyboard.press("u")  # undo the last one: it comes back
    page.wait_for_selector("text=Undone")
    assert Ranking.objects.filter(annotator=alice).count() == 1
