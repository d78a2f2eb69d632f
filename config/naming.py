"""Unique display names for rows created on a user's behalf (runs, models, queues, sets)."""

from __future__ import annotations

from django.db import models


def free_name(model: type[models.Model], base: str) -> str:
    """``base``, or ``base (2)``, ``base (3)``... whichever no row of ``model`` is named yet.

    Cut to fit the model's ``name`` field, the suffix included, so the result always saves.
    """
    field = model._meta.get_field("name")
    assert isinstance(field, models.Field)
    length = field.max_length or len(base)
    base = base[:length]
    candidate, n = base, 2
    while model._default_manager.filter(name=candidate).exists():
        suffix = f" ({n})"
        candidate, n = base[: length - len(suffix)] + suffix, n + 1
    return candidate
