"""Fixtures shared by every test: the tiny offline model and the cast of users."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny Llama and its BPE tokenizer, built offline once per session."""
    from generation.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    return UserFactory(username="alice", roles=["annotator"])


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    return UserFactory(username="bob", roles=["annotator"])


@pytest.fixture
def carol(db):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    return UserFactory(username="carol", roles=["admin"])


@pytest.fixture
def dave(db):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    return UserFactory(username="dave", roles=["researcher"])


@pytest.fixture
def celery_worker(transactional_db):  # type: ignore[no-untyped-def]
    """A real Celery worker (in a thread) consuming every queue of the configured broker.

    Uses the committed test database (``transactional_db``), so tasks see what the test
    wrote. Messages left on the broker by earlier tests are purged first.
    """
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connection

    from config.celery import QUEUES, app

    def close_connection(**kwargs: object) -> None:
        # The worker thread's own connection would keep the test database busy at teardown.
        connection.close()

    task_postrun.connect(close_connection, weak=False)
    app.control.purge()
    with start_worker(
        app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        queues=list(QUEUES),
        loglevel="WARNING",
        shutdown_timeout=60,
    ) as worker:
        yield worker
    task_postrun.disconnect(close_connection)
    from django.db import connections

    connections.close_all()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture(scope="session", autouse=True)
def _end_stray_postgresql_sessions(request: pytest.FixtureRequest) -> object:
    """Before the PostgreSQL test database is dropped, end other sessions still on it.

    Threads started by tests (the live server's, the in-thread Celery worker's) may hold a
    connection past their test; PostgreSQL then refuses to drop the database and the next
    run has to recreate it. The sessions ended are named in a warning, so a real leak stays
    visible without breaking the teardown.
    """
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        yield None
        return
    request.getfixturevalue("django_db_setup")  # torn down after this fixture
    yield None
    import warnings

    from django.db import connection

    blocker = request.getfixturevalue("django_db_blocker")
    with blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid), coalesce(application_name, ''), left(query, 80)"
            " FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        ended = cursor.fetchall()
    connection.close()
    if ended:
        warnings.warn(
            f"ended {len(ended)} stray session(s) on the test database: {ended}", stacklevel=1
        )
