"""Existing databases migrate into the record: labels get version 1, comparisons their rank
gap, and snapshots built before frozen exports keep exporting what they exported."""

from __future__ import annotations

import json

import pytest

from tests.migrations import migrate_to, migrate_to_latest

pytestmark = pytest.mark.slow

# Generation moves with it: its tables must match the historical models the test writes with.
BEFORE = [("labeling", "0005_reward_assistance"), ("generation", "0001_initial")]
AFTER = [
    ("labeling", "0010_snapshot_pointers_without_db_constraints"),
    ("generation", "0002_prompt_exact_hash"),
]


def test_it_migrates_labels_and_freezes_old_snapshots(back_to_the_latest_schema) -> None:  # type: ignore[no-untyped-def]
    apps = migrate_to(BEFORE)
    User = apps.get_model("auth", "User")
    PromptSet = apps.get_model("generation", "PromptSet")
    Prompt = apps.get_model("generation", "Prompt")
    Job = apps.get_model("generation", "GenerationJob")
    Completion = apps.get_model("generation", "Completion")
    Queue = apps.get_model("labeling", "LabelingQueue")
    Task = apps.get_model("labeling", "LabelingTask")
    Assignment = apps.get_model("labeling", "Assignment")
    Ranking = apps.get_model("labeling", "Ranking")
    Comparison = apps.get_model("labeling", "Comparison")
    Snapshot = apps.get_model("labeling", "DatasetSnapshot")
    Row = apps.get_model("labeling", "SnapshotRow")

    ann = User.objects.create(username="ann")
    prompt_set = PromptSet.objects.create(name="p")
    prompt = Prompt.objects.create(prompt_set=prompt_set, position=0, text="Hi?", content_hash="h")
    job = Job.objects.create(prompt_set=prompt_set, source="imported", status="succeeded", k=3)
    a, b, c = (
        Completion.objects.create(job=job, prompt=prompt, sample_index=i, text=t)
        for i, t in enumerate(["Hello.", "Hey.", "Go away."])
    )
    queue = Queue.objects.create(name="q", mode="ranking", ask_scores=True)
    task = Task.objects.create(queue=queue, prompt=prompt, position=0)
    from django.utils import timezone

    now = timezone.now()
    assignment = Assignment.objects.create(
        task=task, annotator=ann, status="submitted", claimed_at=now, expires_at=now
    )
    ranking = Ranking.objects.create(
        assignment=assignment,
        task=task,
        annotator=ann,
        order=[[a.pk], [b.pk], [c.pk]],
        scores={str(a.pk): 7, str(c.pk): 1},
    )
    # The old mixed margins: a score difference where both were scored, else a rank gap.
    for chosen, rejected, margin in ((a, b, 1.0), (a, c, 6.0), (b, c, 1.0)):
        Comparison.objects.create(
            ranking=ranking,
            queue=queue,
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            margin=margin,
            annotator=ann,
        )
    # An imported pair (a TRL file's margin of 2.5) by an imported annotator.
    imp = User.objects.create(username="imported-annotator")
    imported_assignment = Assignment.objects.create(
        task=task, annotator=imp, status="submitted", claimed_at=now, expires_at=now
    )
    imported = Ranking.objects.create(
        assignment=imported_assignment, task=task, annotator=imp, order=[[b.pk], [c.pk]]
    )
    Comparison.objects.create(
        ranking=imported,
        queue=queue,
        prompt=prompt,
        chosen=b,
        rejected=c,
        margin=2.5,
        annotator=imp,
    )
    snap = Snapshot.objects.create(name="old", content_hash="f" * 64, ranking_ids=[ranking.pk])
    Row.objects.create(
        snapshot=snap,
        prompt=prompt,
        chosen=a,
        rejected=c,
        margin=6.0,
        score_chosen=7.0,
        score_rejected=1.0,
        annotator="ann",
        queue=queue,
    )

    migrate_to(AFTER)
    # On to the latest schema: the checks below read through today's models, which know
    # the columns added after AFTER (single-answer verdicts, say).
    migrate_to_latest()
    from labeling import snapshots
    from labeling.models import (
        Comparison as NewComparison,
    )
    from labeling.models import (
        DatasetSnapshot,
        RankingVersion,
    )

    version = RankingVersion.objects.get(annotator__username="ann")
    assert (version.version, version.action, version.order) == (1, "submitted", ranking.order)
    margins = {
        (x.annotator.username, x.chosen_id, x.rejected_id): (
            x.margin,
            x.rank_gap,
            x.score_diff,
            x.imported_margin,
        )
        for x in NewComparison.objects.select_related("annotator")
    }
    assert margins == {
        ("ann", a.pk, b.pk): (1.0, 1.0, None, None),
        ("ann", a.pk, c.pk): (2.0, 2.0, 6.0, None),
        ("ann", b.pk, c.pk): (1.0, 1.0, None, None),
        # The imported margin is kept apart, not overwritten by the rank gap.
        ("imported-annotator", b.pk, c.pk): (1.0, 1.0, None, 2.5),
    }
    old = DatasetSnapshot.objects.get(name="old")
    assert old.hash_scheme == 1 and old.content_hash == "f" * 64
    (line,) = b"".join(snapshots.snapshot_export_trl_jsonl(old)).decode().split("\n")[:-1]
    # The format it had, its bytes frozen from now on.
    assert json.loads(line) == {
        "prompt": "Hi?",
        "chosen": "Hello.",
        "rejected": "Go away.",
        "margin": 6.0,
        "score_chosen": 7.0,
        "score_rejected": 1.0,
        "annotator": "ann",
        "queue": "q",
        "snapshot": "old",
    }
    (listwise,) = [
        json.loads(x)
        for x in b"".join(snapshots.snapshot_export_rankings_jsonl(old)).split(b"\n")[:-1]
    ]
    assert listwise["completions"] == ["Hello.", "Hey.", "Go away."] and listwise["ranks"] == [
        1,
        2,
        3,
    ]
