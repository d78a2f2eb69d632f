"""An annotation lead finds labels by text and by annotator, and opens a prompt's record."""

from __future__ import annotations

import pytest

from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.labeling.factories import label_queue, make_queue

pytestmark = [pytest.mark.browser]


def test_it_searches_labels_by_text_and_annotator(page, live_server, carol, alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=3, k=2, overlap=2, name="chat")
    label_queue(queue, alice)
    label_queue(queue, bob, comment="mentions <b>otters</b>")
    login(page, live_server, "carol", PASSWORD)
    page.get_by_role("link", name="Search").click()
    page.fill("#id_q", "otters")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("#label-results")
    assert page.inner_text("#search-results p.muted") == "3 labels"
    assert set(page.locator("#label-results tbody td:nth-child(3)").all_inner_texts()) == {"bob"}
    assert "mentions <b>otters</b>" in page.inner_text("#label-results")  # shown as text
    assert "q=otters" in page.url  # the search is a link to share

    page.fill("#id_q", "")
    page.select_option("#id_annotator", "alice")
    page.get_by_role("button", name="Search").click()
    # Both searches find 3 labels: wait for the rows themselves to change.
    # A function, not an expression: Playwright evals expressions in the page, which the CSP
    # (script-src 'self', no unsafe-eval) refuses.
    page.wait_for_function(
        "() => document.querySelector('#label-results tbody td:nth-child(3)')"
        "?.textContent === 'alice'"
    )
    assert set(page.locator("#label-results tbody td:nth-child(3)").all_inner_texts()) == {"alice"}

    page.locator("#label-results tbody a").first.click()
    page.wait_for_selector("h1:has-text('Prompt')")
    assert "alice" in page.inner_text("main") and "bob" in page.inner_text("main")
