"""A lead reviews labels in the browser: accepts one, rejects one with a reason; the rejected
label is absent from a new snapshot and its annotator reads why."""

from __future__ import annotations

import pytest

from labeling import snapshots
from labeling.models import LabelReview, Ranking, SnapshotRow
from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.labeling.factories import label_queue, make_queue

pytestmark = [pytest.mark.browser]


def test_a_lead_accepts_and_rejects_and_the_annotator_sees_why(  # type: ignore[no-untyped-def]
    page, live_server, carol, alice, bob
) -> None:
    queue = make_queue(mode="pairwise", prompts=1, k=2, overlap=2, name="chat")
    label_queue(queue, alice)
    label_queue(queue, bob, order=lambda ids: [[ids[1]], [ids[0]]], comment="B is kinder")
    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}/labeling/")
    page.get_by_role("link", name="Review").click()
    rows = page.locator(".review-row")
    assert rows.count() == 2
    alice_row = rows.filter(has_text="alice")
    bob_row = rows.filter(has_text="bob")
    bob_row.get_by_role("button", name="Accept").click()
    page.wait_for_selector(".review-row.review-accepted")
    alice_row.get_by_placeholder("Reason (shown to alice)").fill("A misses the question")
    alice_row.get_by_role("button", name="Reject").click()
    page.wait_for_selector(".review-row.review-rejected")
    assert "A misses the question" in page.inner_text(".review-row.review-rejected")
    assert sorted(LabelReview.objects.values_list("annotator__username", "status")) == [
        ("alice", "rejected"),
        ("bob", "accepted"),
    ]

    snapshot = snapshots.snapshot_build(
        name="reviewed", spec=snapshots.SnapshotFilter(queues=[queue.pk])
    )
    assert set(
        SnapshotRow.objects.filter(snapshot=snapshot).values_list("annotator", flat=True)
    ) == {"bob"}

    page.get_by_role("button", name="Log out").click()
    login(page, live_server, "alice", PASSWORD)
    page.goto(f"{live_server.url}/labeling/")
    page.get_by_role("link", name="See why and label them again").click()
    assert "A misses the question" in page.inner_text("main")
    page.get_by_role("button", name="Label it again").click()
    page.wait_for_selector("#task[data-mode=pairwise]")
    assert not Ranking.objects.filter(annotator=alice).exists()  # taken back, to label again
