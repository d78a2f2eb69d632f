from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from generation import importers, services
from generation.models import PromptSet


class Command(BaseCommand):
    help = "Import prompts from a JSONL, CSV or HH-RLHF file into a prompt set, atomically."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument(
            "--set", dest="set_name", required=True, help="Prompt set name (created if missing)."
        )
        parser.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "hh"])

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        fmt = (
            importers.detect_format(path.name) if options["format"] == "auto" else options["format"]
        )
        try:
            with transaction.atomic():
                prompt_set = PromptSet.objects.filter(name=options["set_name"]).first()
                if prompt_set is None:
                    prompt_set = services.prompt_set_create(name=options["set_name"])
                result = services.prompt_set_import(
                    prompt_set=prompt_set, data=path.read_bytes(), format=fmt
                )
        except (importers.ImportFileError, services.GenerationError) as exc:
            raise CommandError(f"{path}: nothing was imported. {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.created} prompts into {prompt_set.name!r} "
                f"({result.skipped_duplicates} duplicates skipped)."
            )
        )
