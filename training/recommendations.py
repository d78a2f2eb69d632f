"""A base model's recommended settings for runs of one kind: validated writes and the read
the launch form and ``training_run_create`` share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from generation.models import PolicyModel
from training.core.configs import ConfigError, config_fields, from_dict
from training.models import RecommendedSettings, TrainingRun


class RecommendationError(ValueError):
    """Recommended settings that no run could use; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def recommended_values_check(*, kind: str, values: object) -> dict[str, Any]:
    """``values`` as stored: only the given fields, each coerced as a run's config would be.

    Raises :class:`RecommendationError` for an unknown kind, a value that is not an object,
    an unknown field, or a value the kind's config refuses (checked together with the
    kind's other defaults, so a combination no run accepts is refused too).
    """
    if kind not in TrainingRun.Kind.values:
        raise RecommendationError(f"unknown kind of run {kind!r}", field="kind")
    if not isinstance(values, Mapping):
        raise RecommendationError(
            "recommended settings are an object of config fields", field="values"
        )
    if not values:
        raise RecommendationError("recommend at least one setting", field="values")
    try:
        config = from_dict(kind, dict(values))
    except ConfigError as exc:
        raise RecommendationError(str(exc), field=exc.field) from exc
    return {name: getattr(config, name) for name in values}


@transaction.atomic
def recommended_settings_set(
    *,
    model: PolicyModel,
    kind: str,
    values: Mapping[str, Any],
    note: str = "",
    user: User | None = None,
) -> RecommendedSettings:
    """Store (or replace) what ``model`` recommends for runs of ``kind``; see
    :func:`recommended_values_check` for what is refused."""
    checked = recommended_values_check(kind=kind, values=values)
    recommended, _ = RecommendedSettings.objects.update_or_create(
        base_model=model,
        kind=kind,
        defaults={"values": checked, "note": note, "updated_by": user},
    )
    return recommended


def recommended_settings_for(*, model: PolicyModel | None, kind: str) -> RecommendedSettings | None:
    """What ``model`` recommends for ``kind``, if anything."""
    if model is None:
        return None
    return RecommendedSettings.objects.filter(base_model=model, kind=kind).first()


def recommended_values(recommended: RecommendedSettings | None) -> dict[str, Any]:
    """The stored values that are still fields of the kind's config (a field a later version
    dropped is ignored rather than breaking every launch from the model)."""
    if recommended is None or not isinstance(recommended.values, dict):
        return {}
    names = {field.name for field in config_fields(recommended.kind)}
    return {name: value for name, value in recommended.values.items() if name in names}
