from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training import evaluations, selectors
from training.api import leaderboard_payload
from training.models import Evaluation


class Command(BaseCommand):
    help = (
        "Print an evaluation's Bradley-Terry leaderboard (ratings with bootstrap 95% "
        "intervals) and its pairwise win-rates. Takes the evaluation's id or name."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("evaluation", help="the evaluation's id or exact name")
        parser.add_argument("--json", action="store_true", help="print the API's JSON instead")
        parser.add_argument(
            "--rounds", type=int, default=selectors.BOOTSTRAP_ROUNDS, help="bootstrap rounds"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key = str(options["evaluation"])
        evaluation = Evaluation.objects.filter(name=key).first()
        if evaluation is None and key.isdigit():
            evaluation = Evaluation.objects.filter(pk=int(key)).first()
        if evaluation is None:
            raise CommandError(f"no evaluation with the id or name {key!r}")
        if options["rounds"] < 1:
            raise CommandError("--rounds must be at least 1")
        evaluation = evaluations.evaluation_advance(evaluation=evaluation)
        results = selectors.evaluation_results(
            evaluation=evaluation, bootstrap_rounds=options["rounds"]
        )
        if options["json"]:
            self.stdout.write(json.dumps(leaderboard_payload(evaluation, results), indent=2))
            return
        self.stdout.write(self._table(evaluation, results))

    def _table(self, evaluation: Evaluation, results: selectors.EvaluationResults) -> str:
        lines = [
            f"{evaluation.name} ({evaluation.status}): {results.comparisons} comparisons, "
            f"Bradley-Terry on the Elo scale (mean 1000), {results.bootstrap_rounds}-round "
            "bootstrap 95% CI",
        ]
        if evaluation.status == Evaluation.Status.FAILED:
            lines.append(f"failed: {evaluation.error}")
        width = max([5, *(len(row.model.name) for row in results.leaderboard)])
        lines.append("")
        lines.append(
            f"{'rank':>4}  {'model':<{width}}  {'rating':>6}  {'95% CI':>11}  "
            f"{'wins':>5}  {'ties':>5}  {'losses':>6}"
        )
        for row in results.leaderboard:
            interval = f"{row.low:.0f}–{row.high:.0f}"
            lines.append(
                f"{row.rank:>4}  {row.model.name:<{width}}  {row.rating:>6.0f}  "
                f"{interval:>11}  {row.wins:>5}  {row.ties:>5}  {row.losses:>6}"
            )
        lines.append("")
        lines.append("win-rates (A against B, ties count half, 95% Wilson CI):")
        for pair in results.pairs:
            result = pair.result
            if result.rate is None:
                text = "no comparisons"
            else:
                text = (
                    f"{result.rate:.3f} ({result.low:.3f}–{result.high:.3f}), "
                    f"{result.wins}-{result.ties}-{result.losses} (W-T-L)"
                )
            lines.append(f"  {pair.model_a.name} vs {pair.model_b.name}: {text}")
        return "\n".join(lines) + "\n"
