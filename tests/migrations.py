"""Helpers for the tests that migrate an existing database: move to a set of migrations and
back to the latest schema afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(targets: list[tuple[str, str]]) -> Apps:
    """Migrate the test database to ``targets`` (forwards or backwards); the historical
    models of every migration then applied. The other apps stay where they were (their latest
    migrations, say), so their models are theirs too, not those of the targets' ancestors
    only: a column added by another app's later migration must be in the models that write
    rows."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    loader = MigrationExecutor(connection).loader
    return loader.project_state(list(loader.applied_migrations)).apps


def migrate_to_latest() -> None:
    """Migrate the test database to every app's latest migration."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def back_to_the_latest_schema(transactional_db: Any) -> Any:
    """Whatever the test migrates to, the database ends on every app's latest migration, so
    migrations added later are there for the tests that run next."""
    yield
    migrate_to_latest()
