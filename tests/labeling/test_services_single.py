"""Single-answer queues: one answer per task, judged good or bad (with an optional score),
kept in the same append-only label record as rankings."""

from __future__ import annotations

import pytest

from labeling import record, services
from labeling.models import (
    Assignment,
    Comparison,
    LabelingQueue,
    LabelingTask,
    Ranking,
    RankingVersion,
)
from tests.labeling.factories import claim_next, finished_job, make_queue


def _answer(task: LabelingTask) -> int:
    (completion_id,) = task.slots.values_list("completion_id", flat=True)
    return completion_id


def _judge(assignment: Assignment, verdict: str, **kwargs: object) -> Ranking:
    return services.ranking_submit(
        assignment_id=assignment.pk,
        user=assignment.annotator,
        submission=services.Submission(
            order=[[_answer(assignment.task)]],
            verdict=verdict,
            **kwargs,  # type: ignore[arg-type]
        ),
    )


def test_it_makes_one_task_per_answer(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=3, k=2)

    assert queue.mode == LabelingQueue.Mode.SINGLE
    assert queue.tasks.count() == 6
    answers = [_answer(t) for t in queue.tasks.all()]
    assert len(set(answers)) == 6  # every completion once


def test_it_takes_a_prompt_with_a_single_answer(db) -> None:  # type: ignore[no-untyped-def]
    job = finished_job(prompts=2, k=1)  # too few for pairs, enough to judge
    queue = services.labeling_queue_create(
        jobs=[job], settings=services.QueueSettings(name="thumbs", mode="single")
    )
    assert queue.tasks.count() == 2
    with pytest.raises(services.LabelingError, match="at least two completions"):
        services.labeling_queue_create(
            jobs=[job], settings=services.QueueSettings(name="pairs", mode="pairwise")
        )


def test_it_stores_a_verdict_and_score_without_comparisons(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=2, ask_scores=True)
    claim = claim_next(queue, alice)
    answer = _answer(claim.task)

    ranking = _judge(claim, "bad", scores={str(answer): 2}, comment="rude")

    assert (ranking.order, ranking.verdict, ranking.scores) == ([[answer]], "bad", {str(answer): 2})
    assert not Comparison.objects.exists()  # a single answer makes no pair
    (version,) = RankingVersion.objects.all()
    assert (version.verdict, version.scores, version.action) == (
        "bad",
        {str(answer): 2},
        "submitted",
    )
    claim.refresh_from_db()
    assert claim.status == Assignment.Status.SUBMITTED
    assert LabelingTask.objects.get(pk=claim.task_id).submitted_count == 1


def test_it_keeps_every_version_through_edit_undo_and_resubmit(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=1)
    claim = claim_next(queue, alice)

    _judge(claim, "good")
    assert _judge(claim, "good").version == 1  # the same label again changes nothing
    assert _judge(claim, "bad").version == 2  # an edit
    services.ranking_undo_last(queue=queue, user=alice)
    assert not Ranking.objects.exists()
    claim.refresh_from_db()
    assert _judge(claim, "good").version == 4

    versions = list(RankingVersion.objects.values_list("version", "action", "verdict"))
    assert versions == [
        (1, "submitted", "good"),
        (2, "edited", "bad"),
        (3, "undone", ""),
        (4, "resubmitted", "good"),
    ]
    exported = b"".join(record.label_versions_export_jsonl(queue_ids=[queue.pk])).decode()
    assert [line.count('"verdict": "good"') for line in exported.splitlines()] == [1, 0, 0, 1]
    assert '"verdict": "bad"' in exported.splitlines()[1]


def test_it_honours_the_overlap_and_the_leases(alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=1, overlap=2)

    first = claim_next(queue, alice)
    second = claim_next(queue, bob)
    assert first.task_id == second.task_id
    assert services.task_claim_next(queue=queue, user=carol) is None  # both slots held
    _judge(first, "good")
    _judge(second, "bad")
    assert services.task_claim_next(queue=queue, user=carol) is None


@pytest.mark.parametrize(
    ("mode", "verdict", "message"),
    [
        ("single", "", "verdict: this queue asks whether the answer is good or bad"),
        ("single", "meh", "verdict: 'meh' is not one of good, bad"),
        ("pairwise", "good", "verdict: this is a pairwise queue"),
    ],
)
def test_it_refuses_a_missing_or_misplaced_verdict(alice, mode, verdict, message) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode=mode, prompts=1, k=2)
    claim = claim_next(queue, alice)
    ids = list(claim.task.slots.order_by("slot").values_list("completion_id", flat=True))

    with pytest.raises(services.LabelingError, match=message) as error:
        services.ranking_submit(
            assignment_id=claim.pk,
            user=alice,
            submission=services.Submission(order=[[i] for i in ids], verdict=verdict),
        )
    assert error.value.field == "verdict"
    assert not RankingVersion.objects.exists()


def test_it_refuses_scores_out_of_range_on_a_single_answer(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=1, ask_scores=True)
    claim = claim_next(queue, alice)
    answer = _answer(claim.task)

    for bad in (0, 8):
        with pytest.raises(services.LabelingError, match="scores run from 1 to 7") as error:
            _judge(claim, "good", scores={str(answer): bad})
        assert error.value.field == "scores"
    assert not Ranking.objects.exists()
