"""Reachability checks for the database and the Celery broker."""

from __future__ import annotations

import time
from typing import TypedDict

from django.db import connection


class Check(TypedDict):
    ok: bool
    ms: float
    error: str


def _timed(fn: object) -> Check:
    start = time.perf_counter()
    try:
        fn()  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"; say which
        return {"ok": False, "ms": _ms(start), "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "ms": _ms(start), "error": ""}


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def broker_ping() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def health_check() -> dict[str, Check]:
    return {"database": _timed(database_ping), "broker": _timed(broker_ping)}
