"""Upper bounds shared by forms, serializers and query strings, so that no number a client
sends reaches the database or a library out of range (SQLite's and PostgreSQL's integers are
64-bit; seeds go to numpy and vLLM, which take 32 bits)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError

SEED_MAX = 2**32 - 1
"""Largest seed a job, snapshot, evaluation, queue or run accepts (numpy's limit)."""

ID_MAX = 2**63 - 1
"""Largest primary key: a 64-bit signed integer (``BigAutoField``)."""


def query_id(params: Any, name: str) -> int | None:
    """The id in query parameter ``name``, None when absent or empty; a ``ValidationError``
    naming the parameter (a 400 in DRF views) when it is not an id."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= ID_MAX:
        raise ValidationError({name: [f"must be an id between 1 and {ID_MAX}"]})
    return int(text)


def query_int(params: Any, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within [minimum, maximum]; a ``ValidationError`` naming it."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValidationError({name: ["must be an integer"]}) from None
    if not minimum <= value <= maximum:
        raise ValidationError({name: [f"must be between {minimum} and {maximum}"]})
    return value
