"""Prompts are deduplicated on their exact content, no longer on a normalised key.

``content_hash`` keeps its meaning (the normalised key, which snapshots split on), so no
existing snapshot's split moves. ``exact_hash`` is computed for every existing prompt from
its stored text or messages, with the same function as new imports (copied here so that
this migration never changes). Prompts that an earlier import merged cannot be told apart
again; every stored prompt keeps its text.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import migrations, models


def _exact_hash(text: str, messages: list[dict[str, str]] | None) -> str:
    canonical: list[Any] = (
        ["text", text]
        if messages is None
        else ["messages", [[m["role"], m["content"]] for m in messages]]
    )
    return hashlib.sha256(
        json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


def fill_exact_hash(apps: Any, schema_editor: Any) -> None:
    Prompt = apps.get_model("generation", "Prompt")
    batch: list[Any] = []
    for prompt in Prompt.objects.only("id", "text", "messages").iterator(chunk_size=2000):
        prompt.exact_hash = _exact_hash(prompt.text, prompt.messages)
        batch.append(prompt)
        if len(batch) >= 2000:
            Prompt.objects.bulk_update(batch, ["exact_hash"])
            batch = []
    if batch:
        Prompt.objects.bulk_update(batch, ["exact_hash"])


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="exact_hash",
            field=models.CharField(
                default="",
                help_text="sha256 of the exact content (generation.importers.exact_hash): a set "
                "holds each exact prompt once.",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill_exact_hash, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="prompt",
            name="content_hash",
            field=models.CharField(
                help_text="sha256 of the normalised content (NFC, whitespace collapsed): keeps "
                "near-duplicates on the same side of a snapshot's held-out split; never merges "
                "prompts.",
                max_length=64,
            ),
        ),
        migrations.RemoveConstraint(
            model_name="prompt",
            name="prompt_unique_content_per_set",
        ),
        migrations.AddConstraint(
            model_name="prompt",
            constraint=models.UniqueConstraint(
                fields=("prompt_set", "exact_hash"), name="prompt_unique_exact_content_per_set"
            ),
        ),
    ]
