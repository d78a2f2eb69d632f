from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from generation.tiny_model import TinyModelSpec, build_tiny_model


class Command(BaseCommand):
    help = (
        "Write a tiny random-init causal LM and its tokenizer to PATH, offline. Loadable with "
        "AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer and vLLM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--layers", type=int, default=TinyModelSpec.num_hidden_layers)
        parser.add_argument("--hidden", type=int, default=TinyModelSpec.hidden_size)

    def handle(self, *args: Any, **options: Any) -> None:
        spec = TinyModelSpec(
            seed=options["seed"],
            num_hidden_layers=options["layers"],
            hidden_size=options["hidden"],
            intermediate_size=2 * options["hidden"],
        )
        out = build_tiny_model(options["path"], spec)
        self.stdout.write(self.style.SUCCESS(f"Wrote a tiny model to {out}"))
