# Reward-model assistance moves from labeling (LabelingQueue.reward_run and .assist_note) to
# training: one QueueAssistance row per queue that had a reward run or a note, copied before
# labeling's 0011 drops the two columns (run_before), and copied back when unapplied.

import django.db.models.deletion
from django.db import migrations, models


def copy_from_queues(apps, schema_editor):
    LabelingQueue = apps.get_model("labeling", "LabelingQueue")
    QueueAssistance = apps.get_model("training", "QueueAssistance")
    TrainingRun = apps.get_model("training", "TrainingRun")
    # The column held TrainingRun ids under a foreign key (see labeling's 0005); a run
    # that is gone (never, with the constraint) leaves the queue's note without a run.
    runs = set(TrainingRun.objects.values_list("pk", flat=True))
    assisted = (
        LabelingQueue.objects.exclude(reward_run__isnull=True, assist_note="")
        .order_by("pk")
        .values_list("pk", "reward_run", "assist_note")
    )
    QueueAssistance.objects.bulk_create(
        [
            QueueAssistance(
                queue_id=queue_id, reward_run_id=run_id if run_id in runs else None, note=note
            )
            for queue_id, run_id, note in assisted.iterator(chunk_size=1000)
        ],
        batch_size=1000,
    )


def copy_back_to_queues(apps, schema_editor):
    LabelingQueue = apps.get_model("labeling", "LabelingQueue")
    QueueAssistance = apps.get_model("training", "QueueAssistance")
    for assist in QueueAssistance.objects.order_by("pk").iterator(chunk_size=1000):
        LabelingQueue.objects.filter(pk=assist.queue_id).update(
            reward_run=assist.reward_run_id, assist_note=assist.note
        )


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0010_snapshot_pointers_without_db_constraints"),
        ("training", "0004_reward_stats_grpo"),
    ]
    # Copy before labeling drops the columns; declared here, so that labeling's migration
    # does not depend on training.
    run_before = [("labeling", "0011_assistance_moves_to_training")]

    operations = [
        migrations.CreateModel(
            name="QueueAssistance",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("note", models.TextField(blank=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "queue",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="assistance",
                        to="labeling.labelingqueue",
                    ),
                ),
                (
                    "reward_run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="assisted_queues",
                        to="training.trainingrun",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "queue assistance",
            },
        ),
        migrations.RunPython(copy_from_queues, copy_back_to_queues),
    ]
