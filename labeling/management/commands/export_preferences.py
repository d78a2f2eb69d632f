from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling import snapshots
from labeling.models import DatasetSnapshot


class Command(BaseCommand):
    help = "Write a snapshot as TRL preference JSONL (and its data card) to a folder or stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("snapshot", help="Snapshot name or id.")
        parser.add_argument(
            "--out",
            type=Path,
            help="Folder for train/eval.jsonl, rankings.jsonl, sft.jsonl and README.md; stdout if omitted.",
        )
        parser.add_argument(
            "--split", choices=["train", "eval"], help="Only this split (stdout mode)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["snapshot"]
        snapshot = DatasetSnapshot.objects.filter(name=key).first()
        if snapshot is None and key.isdigit():
            snapshot = DatasetSnapshot.objects.filter(pk=int(key)).first()
        if snapshot is None:
            raise CommandError(f"no snapshot named {key!r}")
        out: Path | None = options["out"]
        if out is None:
            for chunk in snapshots.snapshot_export_trl_jsonl(snapshot, split=options["split"]):
                sys.stdout.buffer.write(chunk)
            return
        out.mkdir(parents=True, exist_ok=True)
        for split in ("train", "eval"):
            with (out / f"{split}.jsonl").open("wb") as handle:
                for chunk in snapshots.snapshot_export_trl_jsonl(snapshot, split=split):
                    handle.write(chunk)
        for filename, chunks in (
            ("rankings.jsonl", snapshots.snapshot_export_rankings_jsonl(snapshot)),
            ("sft.jsonl", snapshots.snapshot_export_sft_jsonl(snapshot)),
        ):
            with (out / filename).open("wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
        (out / "README.md").write_text(snapshots.snapshot_data_card(snapshot), encoding="utf-8")
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {snapshot.row_count} rows of {snapshot.name} to {out}")
        )
