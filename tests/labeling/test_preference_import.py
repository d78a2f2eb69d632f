from __future__ import annotations

import gzip
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from generation import importers
from labeling import snapshots
from labeling.models import Comparison, LabelingQueue
from labeling.preference_import import preferences_import
from tests.paths import HH_FILE


@pytest.mark.slow
def test_it_round_trips_the_hh_file_through_a_snapshot_byte_for_byte(db) -> None:  # type: ignore[no-untyped-def]
    """Every row of the harmless-base test file comes back out of a snapshot's TRL export
    exactly: HH transcript = prompt turns + "\n\nAssistant: " + answer (README)."""
    if not HH_FILE.is_file():
        pytest.fail(f"the HH-RLHF test file is missing at {HH_FILE}")
    raw = HH_FILE.read_bytes()
    queue = preferences_import(data=raw, format="hh", name="hh", source_name=HH_FILE.name)
    assert Comparison.objects.filter(queue=queue).count() == 2312
    assert not queue.is_active  # nothing left to label
    snap = snapshots.snapshot_build(
        name="hh", spec=snapshots.SnapshotFilter(queues=[queue.pk]), eval_fraction=0
    )
    exported = [
        json.loads(line)
        for line in b"".join(snapshots.snapshot_export_trl_jsonl(snap)).splitlines()
    ]
    assert len(exported) == 2312
    rebuilt = []
    for row in exported:
        [chosen], [rejected] = row["chosen"], row["rejected"]
        assert chosen["role"] == rejected["role"] == "assistant"
        rebuilt.append(
            (
                importers.hh_transcript(row["prompt"], chosen["content"]),
                importers.hh_transcript(row["prompt"], rejected["content"]),
            )
        )
    original = [json.loads(line) for line in gzip.decompress(raw).decode("utf-8").splitlines()]
    assert sorted(rebuilt) == sorted((r["chosen"], r["rejected"]) for r in original)


def test_it_imports_trl_jsonl_with_margins(db) -> None:  # type: ignore[no-untyped-def]
    lines = [
        {"prompt": "Say hi", "chosen": "hi!", "rejected": "no.", "margin": 2.5},
        {
            "prompt": [{"role": "user", "content": "Hello"}],
            "chosen": [{"role": "assistant", "content": "Hey"}],
            "rejected": [{"role": "assistant", "content": "Go away"}],
        },
    ]
    queue = preferences_import(
        data="\n".join(json.dumps(x) for x in lines), format="trl", name="trl"
    )
    rows = {
        c.chosen.text: (c.rejected.text, c.margin, c.imported_margin)
        for c in Comparison.objects.filter(queue=queue)
    }
    # The file's margin is kept exactly, apart: `margin` is the rank gap for every pair.
    assert rows == {"hi!": ("no.", 1.0, 2.5), "Hey": ("Go away", 1.0, None)}


def test_it_imports_nothing_from_a_bad_file(db) -> None:  # type: ignore[no-untyped-def]
    data = '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n'
    with pytest.raises(importers.ImportFileError, match="line 2: 'rejected' is missing"):
        preferences_import(data=data, format="trl", name="bad")
    assert not LabelingQueue.objects.exists() and not Comparison.objects.exists()


def test_it_imports_trl_rows_with_an_implicit_prompt(db) -> None:  # type: ignore[no-untyped-def]
    def msg(role: str, content: str) -> dict[str, str]:
        return {"role": role, "content": content}

    lines = [
        {
            "chosen": [msg("user", "Sky?"), msg("assistant", " Blue")],
            "rejected": [msg("user", "Sky?"), msg("assistant", "Green ")],
        },
        {"chosen": "The sky is blue.", "rejected": "The sky is green.", "margin": 3},
    ]
    queue = preferences_import(
        data="\n".join(json.dumps(x) for x in lines), format="trl", name="implicit"
    )
    rows = {
        (
            c.prompt.text,
            json.dumps(c.prompt.messages),
            c.chosen.text,
            c.rejected.text,
            c.imported_margin,
        )
        for c in Comparison.objects.filter(queue=queue).select_related(
            "prompt", "chosen", "rejected"
        )
    }
    assert rows == {
        ("User: Sky?", json.dumps([msg("user", "Sky?")]), " Blue", "Green ", None),
        ("The sky is", "null", " blue.", " green.", 3.0),
    }


def test_it_names_the_line_of_a_bad_implicit_row_and_imports_nothing(db) -> None:  # type: ignore[no-untyped-def]
    data = "\n".join(
        json.dumps(x)
        for x in [
            {"chosen": "Q? yes", "rejected": "Q? no"},
            {"chosen": "yes", "rejected": "no"},
        ]
    )
    with pytest.raises(importers.ImportFileError, match="line 2: 'chosen' and 'rejected' share"):
        preferences_import(data=data, format="trl", name="implicit")
    assert not LabelingQueue.objects.exists() and not Comparison.objects.exists()


def test_it_imports_from_the_command_line(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    out = StringIO()
    call_command("import_preferences", str(path), "--format", "trl", stdout=out)
    assert "Imported 1 comparisons" in out.getvalue()
    with pytest.raises(CommandError, match="already exists"):
        call_command("import_preferences", str(path), "--format", "trl", stdout=StringIO())
