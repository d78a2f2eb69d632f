from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation import importers
from labeling.preference_import import preferences_import
from labeling.services import LabelingError


class Command(BaseCommand):
    help = "Import labeled pairs (Anthropic HH-RLHF or TRL preference JSONL) as comparisons, atomically."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--format", required=True, choices=["hh", "trl"])
        parser.add_argument("--name", default="", help="Queue name (default: the file name).")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        try:
            queue = preferences_import(
                data=path.read_bytes(),
                format=options["format"],
                name=options["name"] or path.name,
                source_name=path.name,
            )
        except (importers.ImportFileError, LabelingError) as exc:
            raise CommandError(f"{path}: nothing was imported. {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {queue.comparisons.count()} comparisons into the queue {queue.name!r}."
            )
        )
