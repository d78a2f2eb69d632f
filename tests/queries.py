"""Small typed reads for tests."""

from __future__ import annotations

from typing import TypeVar

from django.db import models

M = TypeVar("M", bound=models.Model)


def first_row(queryset: models.QuerySet[M]) -> M:
    """``queryset.first()``, for a row the test expects to exist."""
    row = queryset.first()
    assert row is not None, f"no row in {queryset.model.__name__}"
    return row
