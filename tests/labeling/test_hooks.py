"""labeling's neutral hooks, filled here by stand-ins rather than training: reference scores
the dashboard compares annotators with, dashboard panels, task priorities and assignments that
take no overlap slot."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils.html import format_html

from labeling import hooks, selectors, services
from labeling.models import Assignment, LabelingQueue, LabelingTask
from tests.labeling.factories import label_queue, make_queue


@pytest.fixture
def no_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what the test registers (training's providers set aside)."""
    monkeypatch.setattr(hooks, "_reference_scores", [])
    monkeypatch.setattr(hooks, "_dashboard_panels", [])


def _first_slot_scores(queue: LabelingQueue) -> dict[int, float]:
    """A score per completion that prefers each task's first slot."""
    scores: dict[int, float] = {}
    for task in queue.tasks.all():
        a, b = task.slots.order_by("slot").values_list("completion_id", flat=True)
        scores[a], scores[b] = 1.0, 0.0
    return scores


def test_it_compares_annotators_with_registered_reference_scores(
    no_providers, alice, carol
) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=3, k=2)
    label_queue(queue, alice)  # the first slot each time
    assert selectors.queue_dashboard(queue=queue, user=carol).reward is None

    scores = _first_slot_scores(queue)
    hooks.reference_scores_register(lambda q: None)  # a provider with nothing to say
    hooks.reference_scores_register(
        lambda q: hooks.ReferenceScores(name="oracle", scores=scores) if q == queue else None
    )

    board = selectors.queue_dashboard(queue=queue, user=carol)
    assert board.reward is not None and board.reward.run_name == "oracle"
    assert board.reward.humans == (3, 3)
    assert {a.username: a.reward_agree for a in board.annotators} == {"alice": (3, 3)}
    other = make_queue(mode="pairwise", prompts=1, k=2)
    assert selectors.queue_dashboard(queue=other, user=carol).reward is None


def test_it_adds_registered_panels_to_the_dashboard(no_providers, client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    client.force_login(carol)
    url = f"/labeling/queues/{queue.pk}/dashboard/"
    assert 'id="assistance"' not in client.get(url).content.decode()

    hooks.dashboard_panel_register(
        lambda request, q: format_html('<section id="extra">{}</section>', f"<{q.name}>")
    )
    body = client.get(url).content.decode()
    assert f'<section id="extra">&lt;{queue.name}&gt;</section>' in body


def test_it_sets_priorities_for_the_queues_own_tasks_only(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    other = make_queue(mode="pairwise", prompts=1, k=2)
    first, second = queue.tasks.order_by("position")
    stranger = other.tasks.get()

    scored = services.task_priorities_set(
        queue=queue, priorities={first.pk: 0.5, second.pk: None, stranger.pk: 0.1}
    )

    assert scored == 1
    assert dict(LabelingTask.objects.values_list("id", "priority")) == {
        first.pk: 0.5,
        second.pk: None,
        stranger.pk: None,
    }
    services.labeling_queue_task_order_set(
        queue=queue, task_order="uncertainty", clear_priorities=True
    )
    queue.refresh_from_db()
    assert queue.task_order == "uncertainty"
    assert not LabelingTask.objects.filter(priority__isnull=False).exists()
    with pytest.raises(services.LabelingError, match="unknown task order"):
        services.labeling_queue_task_order_set(queue=queue, task_order="random")


def test_an_uncounted_assignment_leaves_the_overlap_slot_free(db, alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2, overlap=1)
    task = queue.tasks.get()
    extra = services.assignment_uncounted_open(task_id=task.pk, user=bob, lease_seconds=60)
    a, b = task.slots.order_by("slot").values_list("completion_id", flat=True)
    services.ranking_submit(
        assignment_id=extra.pk, user=bob, submission=services.Submission(order=[[a], [b]])
    )

    assert not Assignment.objects.get(pk=extra.pk).counts_toward_overlap
    assert services.assignment_uncounted_open(task_id=task.pk, user=bob, lease_seconds=60) == extra
    claim = services.task_claim_next(queue=queue, user=alice)
    assert claim is not None and claim.task_id == task.pk
