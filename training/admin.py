"""Admin pages for training: read-mostly, since runs change only through their services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from training.models import (
    CompletionReward,
    ConstitutionLabeler,
    Evaluation,
    PrincipleSet,
    RewardScoring,
    Round,
    TrainingMetric,
    TrainingRun,
)


class _ReadMostly(admin.ModelAdmin):  # type: ignore[type-arg]
    """Browse and delete; creating or editing would bypass the services' checks."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(_ReadMostly):
    list_display = ["name", "kind", "status", "step", "total_steps", "attempts", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "notes"]
    raw_id_fields = ["base_model", "snapshot", "reward_run", "output_model", "created_by"]


@admin.register(TrainingMetric)
class TrainingMetricAdmin(_ReadMostly):
    list_display = ["run", "step", "created_at"]
    list_filter = ["run"]


@admin.register(RewardScoring)
class RewardScoringAdmin(_ReadMostly):
    list_display = ["__str__", "status", "scored", "total", "mean_reward", "created_at"]
    list_filter = ["status"]


@admin.register(CompletionReward)
class CompletionRewardAdmin(_ReadMostly):
    list_display = ["completion", "reward_run", "reward"]
    list_filter = ["reward_run"]
    raw_id_fields = ["completion", "reward_run"]


@admin.register(Evaluation)
class EvaluationAdmin(_ReadMostly):
    list_display = ["name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]


@admin.register(Round)
class RoundAdmin(_ReadMostly):
    list_display = ["__str__", "status", "created_at"]
    list_filter = ["status"]


@admin.register(PrincipleSet)
class PrincipleSetAdmin(_ReadMostly):
    """Browse only: a constitution version is part of the record of its AI labels."""

    list_display = ["__str__", "queue", "text_hash", "created_at"]
    search_fields = ["name", "text"]
    raw_id_fields = ["queue", "created_by"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ConstitutionLabeler)
class ConstitutionLabelerAdmin(_ReadMostly):
    list_display = ["__str__", "status", "labeled", "unparseable", "updated_at"]
    list_filter = ["status"]
    raw_id_fields = ["principle_set", "judge_model", "user", "created_by"]
