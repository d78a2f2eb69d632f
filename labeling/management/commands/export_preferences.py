from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling import record, snapshots
from labeling.models import DatasetSnapshot, LabelingQueue


class Command(BaseCommand):
    help = (
        "Write a snapshot as TRL preference JSONL (and its listwise, SFT, unpaired single-answer "
        "labels and data card) to a "
        "folder or stdout; or, with --labels, every version of every annotator's label."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("snapshot", nargs="?", help="Snapshot name or id.")
        parser.add_argument(
            "--out",
            type=Path,
            help="Folder for train/eval.jsonl, rankings.jsonl, sft.jsonl, unpaired.jsonl "
            "(single-answer labels, TRL's unpaired format) and README.md "
            "(with --labels: labels.jsonl); stdout if omitted.",
        )
        parser.add_argument(
            "--split", choices=["train", "eval"], help="Only this split (stdout mode)."
        )
        parser.add_argument(
            "--unpaired",
            action="store_true",
            help="Stdout mode: the single-answer labels (TRL's unpaired format, for KTO) "
            "instead of the pairs.",
        )
        parser.add_argument(
            "--labels",
            action="store_true",
            help="Export the raw label record (every version, per annotator, with times).",
        )
        parser.add_argument(
            "--queue", action="append", default=[], help="With --labels: a queue name or id."
        )

    def _labels(self, options: dict[str, Any]) -> None:
        queue_ids = []
        for key in options["queue"]:
            queue = LabelingQueue.objects.filter(name=key).first()
            if queue is None and key.isdigit():
                queue = LabelingQueue.objects.filter(pk=int(key)).first()
            if queue is None:
                raise CommandError(f"no labeling queue named {key!r}")
            queue_ids.append(queue.pk)
        chunks = record.label_versions_export_jsonl(queue_ids=queue_ids or None)
        out: Path | None = options["out"]
        if out is None:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            return
        out.mkdir(parents=True, exist_ok=True)
        with (out / "labels.jsonl").open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        self.stdout.write(self.style.SUCCESS(f"Wrote every label version to {out}/labels.jsonl"))

    def handle(self, *args: Any, **options: Any) -> None:
        if options["labels"]:
            self._labels(options)
            return
        key = options["snapshot"]
        if not key:
            raise CommandError("name a snapshot, or pass --labels")
        snapshot = DatasetSnapshot.objects.filter(name=key).first()
        if snapshot is None and key.isdigit():
            snapshot = DatasetSnapshot.objects.filter(pk=int(key)).first()
        if snapshot is None:
            raise CommandError(f"no snapshot named {key!r}")
        out: Path | None = options["out"]
        if out is None:
            export = (
                snapshots.snapshot_export_unpaired_jsonl
                if options["unpaired"]
                else snapshots.snapshot_export_trl_jsonl
            )
            for chunk in export(snapshot, split=options["split"]):
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
            ("unpaired.jsonl", snapshots.snapshot_export_unpaired_jsonl(snapshot)),
        ):
            with (out / filename).open("wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
        (out / "README.md").write_text(snapshots.snapshot_data_card(snapshot), encoding="utf-8")
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {snapshot.row_count} rows of {snapshot.name} to {out}")
        )
