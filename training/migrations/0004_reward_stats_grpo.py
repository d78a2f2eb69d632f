"""Reward normalisation and the GRPO/RLOO kind.

PPO now normalises the reward model's scores by default (``normalize_rewards``). A PPO run
created before that was configured for raw scores; its stored config says so explicitly,
so that resuming it goes on as it started. Its beta and KL target were stored with it and
do not change.
"""

from django.db import migrations, models


def ppo_runs_keep_raw_scores(apps, schema_editor):  # type: ignore[no-untyped-def]
    TrainingRun = apps.get_model("training", "TrainingRun")
    for run in TrainingRun.objects.filter(kind="ppo").only("pk", "config").iterator():
        config = dict(run.config or {})
        if "normalize_rewards" in config:
            continue
        config["normalize_rewards"] = False
        TrainingRun.objects.filter(pk=run.pk).update(config=config)


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0003_kto_kind"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="reward_stats",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="trainingrun",
            name="kind",
            field=models.CharField(
                choices=[
                    ("reward", "Reward model (Bradley-Terry)"),
                    ("dpo", "DPO"),
                    ("ppo", "PPO (RLHF)"),
                    ("sft", "SFT"),
                    ("kto", "KTO (good/bad answers)"),
                    ("grpo", "GRPO / RLOO (critic-free RLHF)"),
                ],
                max_length=10,
            ),
        ),
        migrations.RunPython(ppo_runs_keep_raw_scores, migrations.RunPython.noop),
    ]
