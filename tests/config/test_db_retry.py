"""Heartbeats and progress writes survive a transiently locked database."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from config.db_retry import db_write_retry
from config.heartbeat import Heartbeat
from generation.models import GenerationJob
from tests.generation.factories import GenerationJobFactory


def test_it_retries_a_locked_write_with_growing_pauses() -> None:
    failures = ["database is locked", "database is locked"]
    pauses: list[float] = []

    def write() -> str:
        if failures:
            raise OperationalError(failures.pop())
        return "written"

    assert db_write_retry(write, what="test", sleep=pauses.append) == "written"
    assert pauses == [0.2, 0.4]


def test_it_gives_up_after_the_last_attempt() -> None:
    calls = []

    def write() -> None:
        calls.append(1)
        raise OperationalError("database is locked")

    with pytest.raises(OperationalError):
        db_write_retry(write, what="test", attempts=3, sleep=lambda s: None)
    assert len(calls) == 3


def test_it_does_not_retry_other_errors() -> None:
    def write() -> None:
        raise ValueError("a bug, not a lock")

    with pytest.raises(ValueError):
        db_write_retry(write, what="test", sleep=lambda s: None)


@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="holds SQLite's file lock; PostgreSQL has row locks"
)
def test_it_beats_through_a_real_sqlite_lock(transactional_db) -> None:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(status="running", heartbeat_at=timezone.now() - timedelta(hours=1))
    # Give up on the lock after 50 ms instead of 30 s, so the first attempt fails.
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 50")
    locker = sqlite3.connect(connection.settings_dict["NAME"], timeout=5, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    released = threading.Timer(0.5, lambda: locker.rollback())
    released.start()
    started = time.monotonic()
    Heartbeat(GenerationJob, job.pk, interval=60).beat()
    released.join()
    locker.close()
    assert time.monotonic() - started >= 0.4  # it did wait for the lock
    beat = GenerationJob.objects.get(pk=job.pk).heartbeat_at
    assert beat is not None and timezone.now() - beat < timedelta(seconds=10)
