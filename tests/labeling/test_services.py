from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import services
from labeling.models import Assignment, Comparison, Demonstration, LabelingTask, Ranking
from tests.labeling.factories import claim_next, finished_job, make_queue


def _ids(task: LabelingTask) -> list[int]:
    return list(task.slots.order_by("slot").values_list("completion_id", flat=True))


def _submit(assignment: Assignment, order: list[list[int]], **kwargs: object) -> Ranking:
    return services.ranking_submit(
        assignment_id=assignment.pk,
        user=assignment.annotator,
        submission=services.Submission(order=order, **kwargs),  # type: ignore[arg-type]
    )


def test_it_builds_one_ranking_task_per_prompt(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=3, k=4)
    assert queue.tasks.count() == 3
    assert all(len(_ids(t)) == 4 for t in queue.tasks.all())


def test_it_draws_pairs_for_pairwise_queues(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=3, k=4, pairs_per_prompt=2)
    assert queue.tasks.count() == 6
    for task in queue.tasks.all():
        ids = _ids(task)
        assert len(ids) == 2 and len(set(ids)) == 2


def test_it_mixes_models_in_a_blind_queue(db) -> None:  # type: ignore[no-untyped-def]
    first = finished_job(prompts=2, k=1)
    second = finished_job(prompts=0, k=1)
    # The second model answered the same prompts (same prompt set).
    from generation.models import Completion

    second.prompt_set = first.prompt_set
    second.save()
    for prompt in first.prompt_set.prompts.all():
        Completion.objects.create(job=second, prompt=prompt, sample_index=0, text="other model")
    queue = services.labeling_queue_create(
        jobs=[first, second], settings=services.QueueSettings(name="blind", mode="pairwise")
    )
    assert queue.tasks.count() == 2
    for task in queue.tasks.all():
        jobs = {c.job_id for c in task.completions.all()}
        assert jobs == {first.pk, second.pk}


def test_it_refuses_unfinished_jobs(db) -> None:  # type: ignore[no-untyped-def]
    job = finished_job()
    job.status = "running"
    job.save()
    with pytest.raises(services.LabelingError, match="has not finished"):
        services.labeling_queue_create(jobs=[job], settings=services.QueueSettings(name="q"))


def test_it_expands_a_full_ranking_of_four_into_six_comparisons(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=4)
    assignment = claim_next(queue, alice)
    a, b, c, d = _ids(assignment.task)
    ranking = _submit(assignment, [[c], [a], [d], [b]])
    pairs = {(x.chosen_id, x.rejected_id, x.margin, x.is_tie) for x in ranking.comparisons.all()}
    assert pairs == {
        (c, a, 1.0, False),
        (c, d, 2.0, False),
        (c, b, 3.0, False),
        (a, d, 1.0, False),
        (a, b, 2.0, False),
        (d, b, 1.0, False),
    }
    assert all(x.annotator == alice and x.queue == queue for x in ranking.comparisons.all())


def test_it_stores_ties_and_keeps_rank_gap_and_score_difference_apart(carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=3, ask_scores=True)
    assignment = claim_next(queue, carol)
    a, b, c = _ids(assignment.task)
    ranking = _submit(assignment, [[a, b], [c]], scores={str(a): 6, str(b): 6, str(c): 2})
    rows = {
        (x.chosen_id, x.rejected_id): (x.is_tie, x.margin, x.rank_gap, x.score_diff)
        for x in ranking.comparisons.all()
    }
    assert rows == {
        (min(a, b), max(a, b)): (True, 0.0, 0.0, 0.0),
        (a, c): (False, 1.0, 1.0, 4.0),
        (b, c): (False, 1.0, 1.0, 4.0),
    }


def test_it_measures_margin_in_rank_steps_whether_or_not_scored(carol) -> None:  # type: ignore[no-untyped-def]
    # The case: A>B scored 7 vs 1 and A>C unscored used to give margins 6 and 2.
    queue = make_queue(mode="ranking", k=3, ask_scores=True)
    assignment = claim_next(queue, carol)
    a, b, c = _ids(assignment.task)
    ranking = _submit(assignment, [[a], [b], [c]], scores={str(a): 7, str(b): 1})
    rows = {
        (x.chosen_id, x.rejected_id): (x.margin, x.score_diff) for x in ranking.comparisons.all()
    }
    assert rows == {(a, b): (1.0, 6.0), (a, c): (2.0, None), (b, c): (1.0, None)}


def test_it_rejects_scores_that_contradict_the_ranking(carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=3, ask_scores=True)
    assignment = claim_next(queue, carol)
    a, b, c = _ids(assignment.task)  # displayed as A, B, C
    with pytest.raises(
        services.LabelingError, match=r"A is ranked above C but scored lower \(3 < 6\)"
    ):
        _submit(assignment, [[a], [b], [c]], scores={str(a): 3, str(c): 6})
    assert not Ranking.objects.exists() and not Comparison.objects.exists()
    # Equal scores on a strict preference are fine (and stay a strict preference).
    ranking = _submit(assignment, [[a], [b], [c]], scores={str(a): 4, str(b): 4, str(c): 4})
    assert not ranking.comparisons.filter(is_tie=True).exists()


def test_it_gives_one_comparison_for_a_pairwise_choice(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    assignment = claim_next(queue, alice)
    left, right = _ids(assignment.task)
    ranking = _submit(assignment, [[right], [left]])
    assert [(x.chosen_id, x.rejected_id) for x in ranking.comparisons.all()] == [(right, left)]


@pytest.mark.parametrize(
    ("order", "message"),
    [([], "empty"), ([[1]], "not part of this task"), ("x", "empty")],
)
def test_it_rejects_malformed_orders(alice, order, message: str) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=3)
    assignment = claim_next(queue, alice)
    with pytest.raises(services.LabelingError, match=message):
        _submit(assignment, order)
    assert not Ranking.objects.exists() and not Comparison.objects.exists()


def test_it_requires_every_completion_once(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=3)
    assignment = claim_next(queue, alice)
    a, b, c = _ids(assignment.task)
    with pytest.raises(services.LabelingError, match="rank every completion"):
        _submit(assignment, [[a], [b]])
    with pytest.raises(services.LabelingError, match="ranked twice"):
        _submit(assignment, [[a], [b], [a, c]])


def test_it_treats_a_double_submit_as_one(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=3)
    assignment = claim_next(queue, alice)
    a, b, c = _ids(assignment.task)
    first = _submit(assignment, [[a], [b], [c]])
    again = _submit(assignment, [[a], [b], [c]])
    assert first.pk == again.pk
    assert Ranking.objects.count() == 1 and Comparison.objects.count() == 3


def test_it_replaces_comparisons_when_a_submission_is_edited(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=3)
    assignment = claim_next(queue, alice)
    a, b, c = _ids(assignment.task)
    _submit(assignment, [[a], [b], [c]])
    _submit(assignment, [[c], [b], [a]])
    assert Ranking.objects.count() == 1
    assert set(Comparison.objects.values_list("chosen_id", "rejected_id")) == {
        (c, b),
        (c, a),
        (b, a),
    }


def test_it_refuses_a_submit_after_the_lease_expired(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=2)
    assignment = claim_next(queue, alice)
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    a, b = _ids(assignment.task)
    with pytest.raises(services.LeaseExpired, match="expired"):
        _submit(assignment, [[a], [b]])
    assert not Comparison.objects.exists()


def test_it_refuses_another_annotators_assignment(alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=2)
    assignment = claim_next(queue, alice)
    a, b = _ids(assignment.task)
    with pytest.raises(services.LabelingError, match="not assigned to you"):
        services.ranking_submit(
            assignment_id=assignment.pk, user=bob, submission=services.Submission(order=[[a], [b]])
        )


def test_it_gives_each_task_to_overlap_annotators_and_nobody_twice(alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2, overlap=2)
    first = claim_next(queue, alice)
    second = claim_next(queue, bob)
    assert first.task_id == second.task_id
    assert services.task_claim_next(queue=queue, user=carol) is None  # full
    a, b = _ids(first.task)
    _submit(first, [[a], [b]])
    assert services.task_claim_next(queue=queue, user=alice) is None  # seen it


def test_it_returns_the_same_claim_until_submitted(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=3)
    first = claim_next(queue, alice)
    assert claim_next(queue, alice).pk == first.pk


def test_it_returns_abandoned_tasks_to_the_pool(alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=1, k=2)
    claim = claim_next(queue, alice)
    assert services.task_claim_next(queue=queue, user=bob) is None
    Assignment.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert claim_next(queue, bob).task_id == claim.task_id


def test_it_frees_the_slot_of_a_skipped_task(alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=1, k=2)
    claim = claim_next(queue, alice)
    services.task_skip(assignment=claim)
    assert services.task_claim_next(queue=queue, user=alice) is None
    assert claim_next(queue, bob).task_id == claim.task_id


def test_it_undoes_the_last_submission(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=2, k=3)
    claim = claim_next(queue, alice)
    a, b, c = _ids(claim.task)
    _submit(claim, [[a], [b], [c]], demonstration="A better answer.")
    assert Demonstration.objects.get().text == "A better answer."
    services.task_claim_next(queue=queue, user=alice)  # moved on to the next task
    undone = services.ranking_undo_last(queue=queue, user=alice)
    assert undone is not None and undone.pk == claim.pk and undone.status == "active"
    assert not Ranking.objects.exists() and not Comparison.objects.exists()
    assert not Demonstration.objects.exists()
    assert claim_next(queue, alice).pk == claim.pk
    assert services.ranking_undo_last(queue=queue, user=alice) is None


def test_it_counts_submissions_on_the_task(alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=1, k=2, overlap=2)
    claims = [claim_next(queue, u) for u in (alice, bob)]
    for claim in claims:
        a, b = _ids(claim.task)
        _submit(claim, [[a], [b]])
    task = LabelingTask.objects.get()
    assert task.submitted_count == 2
    services.ranking_undo_last(queue=queue, user=bob)
    task.refresh_from_db()
    assert task.submitted_count == 1
