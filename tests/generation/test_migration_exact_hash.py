"""Migration 0002 on an existing database: prompts keep their text and their normalised
content_hash (so no snapshot's split moves), and get the exact hash new imports use."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from generation.importers import exact_hash

BEFORE = [("generation", "0001_initial")]
AFTER = [("generation", "0002_prompt_exact_hash")]


@pytest.mark.slow
def test_it_fills_the_exact_hash_of_existing_prompts(transactional_db) -> None:  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    prompt_set = old.get_model("generation", "PromptSet").objects.create(name="old")
    Prompt = old.get_model("generation", "Prompt")
    conversation = [{"role": "user", "content": "Hi  there"}]
    rows = [("Hello  world", None, "n1"), ("User: Hi  there", conversation, "n2")]
    for position, (text, messages, key) in enumerate(rows):
        Prompt.objects.create(
            prompt_set=prompt_set, position=position, text=text, messages=messages, content_hash=key
        )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("generation", "Prompt")
    migrated = list(
        new.objects.order_by("position").values_list("text", "content_hash", "exact_hash")
    )
    assert migrated == [
        ("Hello  world", "n1", exact_hash("Hello  world", None)),
        ("User: Hi  there", "n2", exact_hash("User: Hi  there", conversation)),
    ]
    assert migrated[0][2] != hashlib.sha256(b"Hello  world").hexdigest()  # the scheme's prefix

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as it was
