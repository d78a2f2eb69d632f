# Reward-model assistance moves to training (training.QueueAssistance): training's
# 0005_queue_assistance copies each queue's reward run and note into its own table and is
# declared to run before this migration (run_before), so this file names no training
# migration: labeling's new migrations depend on nothing above labeling.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0010_snapshot_pointers_without_db_constraints"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="labelingqueue",
            name="assist_note",
        ),
        migrations.RemoveField(
            model_name="labelingqueue",
            name="reward_run",
        ),
    ]
