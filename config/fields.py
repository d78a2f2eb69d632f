"""Serializer fields that keep a client's values inside what the database can hold."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config.bounds import ID_MAX


class IdField(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    """A primary-key reference that answers "does not exist" for ids beyond 64 bits, instead
    of letting SQLite's driver overflow."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if isinstance(data, int | str) and str(data).strip().lstrip("-").isdigit():
            if not -ID_MAX <= int(str(data).strip()) <= ID_MAX:
                self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)
