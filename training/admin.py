"""Admin pages for training: read-mostly, since runs change only through their services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from training.models import (
    CompletionReward,
    ConstitutionLabeler,
    Evaluation,
    PrincipleSet,
    RecommendedSettings,
    RewardScoring,
    Round,
    TrainingMetric,
    TrainingRun,
)
from training.recommendations import (
    RecommendationError,
    recommended_settings_set,
    recommended_values_check,
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


class RecommendedSettingsForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = RecommendedSettings
        fields = ["base_model", "kind", "values", "note"]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        data = self.cleaned_data
        kind = data.get("kind", self.instance.kind)  # read-only (not in the form) on edits
        if kind and "values" in data:
            try:
                data["values"] = recommended_values_check(kind=kind, values=data["values"])
            except RecommendationError as exc:
                self.add_error("kind" if exc.field == "kind" else "values", str(exc))
        return cleaned


@admin.register(RecommendedSettings)
class RecommendedSettingsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Editable: what a base model recommends for a kind of run (checked by the service)."""

    form = RecommendedSettingsForm
    list_display = ["base_model", "kind", "values", "updated_at"]
    list_filter = ["kind"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # One row per (model, kind): an edit changes the values, not what they are for.
        return ["base_model", "kind"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = recommended_settings_set(
            model=obj.base_model,
            kind=obj.kind,
            values=form.cleaned_data["values"],
            note=form.cleaned_data.get("note", ""),
            user=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
        )
        obj.pk = saved.pk


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
