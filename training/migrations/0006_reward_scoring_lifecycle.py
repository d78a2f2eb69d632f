# The reward scoring becomes a config.jobs.BackgroundJob: cancel, resume, attempts.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0005_queue_assistance"),
    ]

    operations = [
        migrations.AddField(
            model_name="rewardscoring",
            name="attempts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="rewardscoring",
            name="cancel_requested",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="rewardscoring",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="rewardscoring",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                default="queued",
                max_length=10,
            ),
        ),
    ]
