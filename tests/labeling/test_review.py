"""Review: leads accept or reject labels; rejected labels leave new snapshots; annotators
see why and can label the task again."""

from __future__ import annotations

import pytest
from django.test import Client

from labeling import review, services, snapshots
from labeling.models import (
    LabelReview,
    Ranking,
    RankingVersion,
    SnapshotDemonstration,
    SnapshotRow,
)
from tests.labeling.factories import label_queue, make_queue
from tests.queries import first_row


@pytest.fixture
def queue(db, alice, bob):  # type: ignore[no-untyped-def]
    """2 prompts x 2 answers, both labeled by alice (A first) and by bob (B first)."""
    queue = make_queue(mode="pairwise", prompts=2, k=2, overlap=2, name="chat")
    label_queue(queue, alice, demonstration="alice's better answer")
    label_queue(queue, bob, order=lambda ids: [[ids[1]], [ids[0]]])
    return queue


def build(queue, name: str):  # type: ignore[no-untyped-def]
    return snapshots.snapshot_build(name=name, spec=snapshots.SnapshotFilter(queues=[queue.pk]))


def test_it_keeps_every_review_and_the_latest_counts(queue, alice, carol) -> None:  # type: ignore[no-untyped-def]
    label = first_row(Ranking.objects.filter(annotator=alice))
    review.label_review(ranking=label, status="rejected", reason="A is off-topic", reviewer=carol)
    assert review.rejected_labels(Ranking.objects.all()).get() == label
    review.label_review(ranking=label, status="accepted", reviewer=carol)
    assert not review.rejected_labels(Ranking.objects.all()).exists()
    assert list(LabelReview.objects.values_list("status", flat=True)) == ["rejected", "accepted"]


def test_it_needs_a_reason_to_reject_and_bounds_it(queue, alice, carol) -> None:  # type: ignore[no-untyped-def]
    label = first_row(Ranking.objects.filter(annotator=alice))
    for reason, message in (
        ("", "say why"),
        ("   ", "say why"),
        ("x" * (review.REASON_MAX + 1), "at most"),
        ("bad\x00", "NUL"),
    ):
        with pytest.raises(review.ReviewError, match=message):
            review.label_review(ranking=label, status="rejected", reason=reason, reviewer=carol)
    with pytest.raises(review.ReviewError, match="status must be"):
        review.label_review(ranking=label, status="maybe", reviewer=carol)
    assert not LabelReview.objects.exists()


def test_it_refuses_a_review_of_a_version_the_lead_did_not_see(queue, alice, carol) -> None:  # type: ignore[no-untyped-def]
    label = first_row(Ranking.objects.filter(annotator=alice))
    with pytest.raises(review.ReviewError, match="changed this label"):
        review.label_review(
            ranking=label, status="accepted", reviewer=carol, version=label.version + 1
        )


def test_it_leaves_rejected_labels_and_their_demonstrations_out_of_new_snapshots(  # type: ignore[no-untyped-def]
    queue, alice, bob, carol
) -> None:
    before = build(queue, "before review")
    card_before = snapshots.snapshot_data_card(before)
    assert SnapshotRow.objects.filter(snapshot=before, annotator="alice").count() == 2
    rejected = first_row(Ranking.objects.filter(annotator=alice).order_by("pk"))
    review.label_review(ranking=rejected, status="rejected", reason="guessing", reviewer=carol)
    after = build(queue, "after review")
    rows = SnapshotRow.objects.filter(snapshot=after)
    assert rows.filter(annotator="alice").count() == 1 and rows.filter(annotator="bob").count() == 2
    assert rejected.pk not in after.ranking_ids
    assert after.stats["rejected_labels"] == 1
    assert "| labels rejected in review, left out | 1 |" in snapshots.snapshot_data_card(after)
    # alice wrote a demonstration with each label: the rejected one's stays out too.
    assert SnapshotDemonstration.objects.filter(snapshot=before).count() == 2
    assert SnapshotDemonstration.objects.filter(snapshot=after).count() == 1
    # The snapshot built before is untouched, and so is its data card.
    assert SnapshotRow.objects.filter(snapshot=before, annotator="alice").count() == 2
    assert snapshots.snapshot_data_card(before) == card_before
    # A snapshot from before review existed has no count: its card keeps its old bytes.
    before.stats.pop("rejected_labels")
    assert "rejected in review" not in snapshots.snapshot_data_card(before)


def test_it_reviews_a_changed_label_afresh(queue, alice, carol) -> None:  # type: ignore[no-untyped-def]
    label = first_row(Ranking.objects.filter(annotator=alice).order_by("pk"))
    review.label_review(ranking=label, status="rejected", reason="guessing", reviewer=carol)
    assignment = services.ranking_take_back(ranking_id=label.pk, user=alice)
    assert assignment is not None and assignment.status == "active"
    assert RankingVersion.objects.filter(task=label.task, annotator=alice, action="undone").exists()
    a, b = label.task.slots.order_by("slot").values_list("completion_id", flat=True)
    services.ranking_submit(
        assignment_id=assignment.pk, user=alice, submission=services.Submission(order=[[b], [a]])
    )
    relabeled = Ranking.objects.get(task=label.task, annotator=alice)
    assert relabeled.version > label.version
    assert not review.rejected_labels(Ranking.objects.filter(pk=relabeled.pk)).exists()
    assert review.annotator_rejections(user=alice) == []


def test_it_takes_back_only_ones_own_label(queue, alice, bob) -> None:  # type: ignore[no-untyped-def]
    label = first_row(Ranking.objects.filter(annotator=alice))
    assert services.ranking_take_back(ranking_id=label.pk, user=bob) is None
    assert Ranking.objects.filter(pk=label.pk).exists()


# --- pages ---------------------------------------------------------------------------------


def test_the_review_page_is_for_admins(client: Client, queue, alice, dave) -> None:  # type: ignore[no-untyped-def]
    for user in (alice, dave):
        client.force_login(user)
        assert client.get(f"/labeling/queues/{queue.pk}/review/").status_code == 403
    label = first_row(Ranking.objects.all())
    response = client.post(
        f"/labeling/queues/{queue.pk}/labels/{label.pk}/review/",
        {"status": "rejected", "reason": "no"},
    )
    assert response.status_code == 403 and not LabelReview.objects.exists()


def test_a_lead_rejects_and_accepts_in_place(client: Client, queue, alice, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    page = client.get(f"/labeling/queues/{queue.pk}/review/")
    assert page.status_code == 200 and page.content.decode().count('class="card review-row') == 4
    label = first_row(Ranking.objects.filter(annotator=alice))
    url = f"/labeling/queues/{queue.pk}/labels/{label.pk}/review/"
    assert client.get(url).status_code == 405
    hx = {"HX-Request": "true"}
    missing = client.post(url, {"status": "rejected", "version": label.version}, headers=hx)
    assert "say why" in missing.content.decode() and not LabelReview.objects.exists()
    done = client.post(
        url,
        {"status": "rejected", "reason": "<b>guessing</b>", "version": label.version},
        headers=hx,
    )
    body = done.content.decode()
    assert "<html" not in body and f'id="review-{label.pk}"' in body
    assert "review-rejected" in body and "&lt;b&gt;guessing&lt;/b&gt;" in body
    rejected = client.get(f"/labeling/queues/{queue.pk}/review/?show=rejected").context["rows"]
    assert [row["view"].label.pk for row in rejected] == [label.pk]
    unreviewed = client.get(f"/labeling/queues/{queue.pk}/review/?show=unreviewed").context["rows"]
    assert len(unreviewed) == 3
    other_queue = make_queue(mode="pairwise", prompts=1, k=2)
    assert (
        client.post(
            f"/labeling/queues/{other_queue.pk}/labels/{label.pk}/review/",
            {"status": "accepted"},
        ).status_code
        == 404
    )


def test_an_annotator_sees_why_and_labels_again(client: Client, queue, alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    label = first_row(Ranking.objects.filter(annotator=alice))
    review.label_review(
        ranking=label, status="rejected", reason="A ignores the question", reviewer=carol
    )
    client.force_login(alice)
    index = client.get("/labeling/").content.decode()
    assert "A lead rejected 1 of your labels" in index
    page = client.get("/labeling/rejected/").content.decode()
    assert "A ignores the question" in page and "carol" in page
    client.force_login(bob)
    assert "rejected" not in client.get("/labeling/").content.decode().lower()
    assert client.post(f"/labeling/labels/{label.pk}/relabel/").status_code == 404
    client.force_login(alice)
    response = client.post(f"/labeling/labels/{label.pk}/relabel/")
    assert response.status_code == 302 and response["Location"] == f"/labeling/queues/{queue.pk}/"
    assert not Ranking.objects.filter(pk=label.pk).exists()
