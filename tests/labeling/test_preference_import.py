from __future__ import annotations

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
def test_it_round_trips_the_hh_file_through_a_snapshot(db) -> None:  # type: ignore[no-untyped-def]
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

    def key(prompt, chosen, rejected) -> str:  # type: ignore[no-untyped-def]
        return json.dumps([prompt, chosen, rejected], sort_keys=True)

    expected = sorted(
        key(
            r.prompt.messages,
            [{"role": "assistant", "content": r.chosen}],
            [{"role": "assistant", "content": r.rejected}],
        )
        for r in importers.parse_preferences(raw, format="hh")
    )
    assert sorted(key(e["prompt"], e["chosen"], e["rejected"]) for e in exported) == expected


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
        c.chosen.text: (c.rejected.text, c.margin) for c in Comparison.objects.filter(queue=queue)
    }
    assert rows == {"hi!": ("no.", 2.5), "Hey": ("Go away", 1.0)}


def test_it_imports_nothing_from_a_bad_file(db) -> None:  # type: ignore[no-untyped-def]
    data = '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n'
    with pytest.raises(importers.ImportFileError, match="line 2: 'rejected' is missing"):
        preferences_import(data=data, format="trl", name="bad")
    assert not LabelingQueue.objects.exists() and not Comparison.objects.exists()


def test_it_refuses_implicit_prompt_answers(db) -> None:  # type: ignore[no-untyped-def]
    data = json.dumps(
        {
            "prompt": "q",
            "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "rejected": "x",
        }
    )
    with pytest.raises(importers.ImportFileError, match="explicit-prompt"):
        preferences_import(data=data, format="trl", name="implicit")


def test_it_imports_from_the_command_line(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    out = StringIO()
    call_command("import_preferences", str(path), "--format", "trl", stdout=out)
    assert "Imported 1 comparisons" in out.getvalue()
    with pytest.raises(CommandError, match="already exists"):
        call_command("import_preferences", str(path), "--format", "trl", stdout=StringIO())
