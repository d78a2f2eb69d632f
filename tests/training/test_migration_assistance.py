"""Reward-model assistance moves from labeling's queue to training's QueueAssistance on an
existing database: each queue keeps its reward run and note, its task order and priorities,
and labeling's two columns go. Run from the column as databases hold it: the foreign key to
training's runs that labeling's 0005 used to add, and the plain id it adds now."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, models

from tests.migrations import migrate_to

pytestmark = pytest.mark.slow

# The schema before the move (every app's latest migration then).
BEFORE = [
    ("labeling", "0010_snapshot_pointers_without_db_constraints"),
    ("training", "0004_reward_stats_grpo"),
    ("generation", "0002_prompt_exact_hash"),
]
AFTER = [
    ("labeling", "0011_assistance_moves_to_training"),
    ("training", "0005_queue_assistance"),
]
QUEUE_TABLE = "labeling_labelingqueue"


def _columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


def _as_the_old_foreign_key(apps) -> None:  # type: ignore[no-untyped-def]
    """Turn the queue's ``reward_run_id`` into the foreign key the old 0005 created."""
    Queue: Any = apps.get_model("labeling", "LabelingQueue")  # the old fields
    old = Queue._meta.get_field("reward_run")
    fk = models.ForeignKey(
        apps.get_model("training", "TrainingRun"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    fk.set_attributes_from_name("reward_run")
    fk.model = Queue
    with connection.schema_editor() as editor:
        editor.alter_field(Queue, old, fk)


@pytest.mark.parametrize("column", ["foreign key", "plain id"])
def test_it_moves_each_queues_assistance_to_training(column, back_to_the_latest_schema) -> None:  # type: ignore[no-untyped-def]
    apps = migrate_to(BEFORE)
    if column == "foreign key":
        _as_the_old_foreign_key(apps)
    User = apps.get_model("auth", "User")
    PromptSet = apps.get_model("generation", "PromptSet")
    Prompt = apps.get_model("generation", "Prompt")
    Job = apps.get_model("generation", "GenerationJob")
    PolicyModel = apps.get_model("generation", "PolicyModel")
    Snapshot = apps.get_model("labeling", "DatasetSnapshot")
    Queue: Any = apps.get_model("labeling", "LabelingQueue")  # the old fields
    Task = apps.get_model("labeling", "LabelingTask")
    Run = apps.get_model("training", "TrainingRun")

    carol = User.objects.create(username="carol")
    base = PolicyModel.objects.create(name="tiny", source="/models/tiny")
    snapshot = Snapshot.objects.create(name="snap", content_hash="a" * 64)
    run = Run.objects.create(
        name="rm-old",
        kind="reward",
        base_model=base,
        snapshot=snapshot,
        status="succeeded",
        final_dir="/runs/rm-old/final",
        created_by=carol,
    )
    prompt_set = PromptSet.objects.create(name="p")
    prompt = Prompt.objects.create(prompt_set=prompt_set, position=0, text="Hi?", content_hash="h")
    job = Job.objects.create(prompt_set=prompt_set, source="imported", status="succeeded", k=2)
    assisted = Queue.objects.create(
        name="assisted",
        reward_run=run.pk,
        task_order="uncertainty",
        assist_note="Priorities from rm-old: 1 of 1 tasks scored.",
    )
    assisted.jobs.add(job)
    Task.objects.create(queue=assisted, prompt=prompt, position=0, priority=0.25)
    # A note left after the run was unset (a failed scoring says why).
    Queue.objects.create(name="noted", assist_note="scoring job 1 with rm-old failed: OOM")
    Queue.objects.create(name="plain")
    if column == "foreign key":
        with connection.cursor() as cursor:
            relations = connection.introspection.get_relations(cursor, QUEUE_TABLE)
        assert relations["reward_run_id"][1] == "training_trainingrun"

    migrate_to(AFTER)
    from labeling.models import LabelingQueue, LabelingTask
    from training import selectors
    from training.models import QueueAssistance, TrainingRun

    rows = {
        a.queue.name: (a.reward_run_id, a.note)
        for a in QueueAssistance.objects.select_related("queue")
    }
    assert rows == {
        "assisted": (run.pk, "Priorities from rm-old: 1 of 1 tasks scored."),
        "noted": (None, "scoring job 1 with rm-old failed: OOM"),
    }
    queue = LabelingQueue.objects.get(name="assisted")
    assert queue.task_order == "uncertainty"
    assert LabelingTask.objects.get(queue=queue).priority == 0.25
    assert selectors.queue_assistance_run(queue=queue) == TrainingRun.objects.get(name="rm-old")
    assert selectors.queue_assistance_run(queue=LabelingQueue.objects.get(name="plain")) is None
    assert not {"reward_run_id", "assist_note"} & _columns(QUEUE_TABLE)

    # Unapplied, the assistance goes back to the queues.
    old: Any = migrate_to(BEFORE).get_model("labeling", "LabelingQueue")  # the old fields
    back = {q.name: (q.reward_run, q.assist_note) for q in old.objects.all()}
    assert back == {
        "assisted": (run.pk, "Priorities from rm-old: 1 of 1 tasks scored."),
        "noted": (None, "scoring job 1 with rm-old failed: OOM"),
        "plain": (None, ""),
    }
