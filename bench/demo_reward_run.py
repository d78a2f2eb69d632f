"""The demo's first reward run, as carol launches it, and what it learned.

Seeds the demo (its own database under ``PREFLAB_VAR_DIR``), fills the launch form as carol
does (kind reward, the HH snapshot, the all-MiniLM-L6-v2 base, every other value as the form
shows it: the kind's defaults and the model's recommended settings), queues the run through
the service and executes it in this process, as a worker would. Then it scores 300 HH-RLHF
harmless pairs the demo never saw (rows after the first 800 of
``tests/data/hh-rlhf-harmless-base-test.jsonl.gz``, none sharing a prompt with the demo's)
with the saved reward model.

    PREFLAB_VAR_DIR=/tmp/var-bench .venv/bin/python bench/demo_reward_run.py \
        [--quick] [--set learning_rate=5e-5 --set seed=1 ...]

``--set`` changes one form value, as carol would by typing it. ``--quick`` stops the run after
8 optimizer steps and scores 100 unseen pairs (under a minute on 2 cores besides seeding: a
check that the path works, not of what the run reaches). The baseline, measured in the same
run, is the untrained model: the base with a new score head (seeded like the run's) on the same
unseen pairs. Prints one JSON line (the config, wall and CPU time from the run's start to its
saved model, the run's held-out metrics on the snapshot's own eval pairs, the accuracy on the
unseen pairs with its 95% Wilson interval), then the headline last:
``steps=… wall_s=… heldout_acc=… heldout_n=… unseen_acc=… untrained_unseen_acc=…``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

UNSEEN_FILE = ROOT / "tests" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
UNSEEN_PAIRS = 300
# The demo's snapshot holds the first 800 rows of the same file.
DEMO_ROWS = 800
CONFIG_SHOWN = ("learning_rate", "num_epochs", "batch_size", "max_length", "seed")


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (``training.core.ratings.win_rate``,
    the run page's own)."""
    from training.core.ratings import win_rate

    rate = win_rate(successes, 0, n - successes)
    return (rate.low, rate.high)


def unseen_pairs(demo_prompts: set[str]) -> list[tuple[Any, str, str]]:
    from generation.importers import _hh_row

    rows = []
    with gzip.open(UNSEEN_FILE, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if number <= DEMO_ROWS or not line.strip():
                continue
            record, chosen, rejected = _hh_row(number, json.loads(line))
            if record.text in demo_prompts:
                continue
            rows.append((record.messages or record.text, chosen, rejected))
            if len(rows) == UNSEEN_PAIRS:
                break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--quick", action="store_true", help="8 steps, 100 unseen pairs")
    args = parser.parse_args()
    unseen_count = 100 if args.quick else UNSEEN_PAIRS

    import django

    django.setup()
    import torch
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from demo.management.commands.seed_demo import ENCODER_MODEL, HH_SNAPSHOT
    from generation.models import PolicyModel
    from labeling.models import DatasetSnapshot
    from training import runs
    from training.core.scoring import RewardScorer
    from training.forms import TrainingRunForm
    from training.models import TrainingRun

    call_command("migrate", interactive=False, verbosity=0)
    call_command("seed_demo", "--no-job", verbosity=0, stdout=open(os.devnull, "w"))
    carol = get_user_model().objects.get(username="carol")
    model = PolicyModel.objects.get(name=ENCODER_MODEL)
    snapshot = DatasetSnapshot.objects.get(name=HH_SNAPSHOT)

    # The form as it comes once carol has picked the snapshot and the base model.
    shown = TrainingRunForm(
        initial={"base_model": str(model.pk), "snapshot": str(snapshot.pk)}, kind="reward"
    )
    data: dict[str, object] = {"kind": "reward"}
    for name in shown.fields:
        value = shown[name].value()
        if value is None or value is False:
            continue  # an unticked box or an empty choice sends nothing
        data[name] = "on" if value is True else str(value)
    if args.quick:
        data["max_steps"] = "8"
    for item in args.set:
        name, _, value = item.partition("=")
        data[name] = value
    form = TrainingRunForm(data, kind="reward")
    if not form.is_valid():
        raise SystemExit(f"the form refused the values: {form.errors.as_json()}")
    run = runs.training_run_create(user=carol, **form.service_kwargs())
    started, cpu_started = time.monotonic(), time.process_time()
    runs.training_run_execute(run_id=run.pk)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
    run.refresh_from_db()
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise SystemExit(f"run {run.pk} {run.status}: {run.error}")

    demo_prompts = set(snapshot.rows.values_list("prompt__text", flat=True))
    pairs = unseen_pairs(demo_prompts)[:unseen_count]
    max_length = int(run.config["max_length"])

    def accuracy_of(path: str) -> int:
        scorer = RewardScorer(path, max_length=max_length)
        chosen = scorer.score([(p, c) for p, c, _ in pairs])
        rejected = scorer.score([(p, r) for p, _, r in pairs])
        return sum(c > r for c, r in zip(chosen, rejected, strict=True))

    right = accuracy_of(run.final_dir)
    # The baseline: the base model with a new score head, initialised from the run's seed.
    torch.manual_seed(int(run.config["seed"]))
    untrained_right = accuracy_of(str(model.source))
    low, high = wilson(right, len(pairs))
    eval_n = snapshot.eval_count
    eval_acc = run.eval_metrics.get("eval/rewards/accuracies")
    result = {
        "run": run.pk,
        "config": {k: run.config[k] for k in CONFIG_SHOWN},
        "set": args.set,
        "steps": run.step,
        "wall_s": round(wall, 1),
        # CPU seconds of the run (all its threads): on a shared machine, wall time says more
        # about the neighbours than about the run.
        "cpu_s": round(cpu, 1),
        "load": os.getloadavg(),
        "train_pairs": snapshot.train_count,
        "eval_pairs": eval_n,
        "heldout_accuracy": eval_acc,
        "heldout_wilson95": [round(x, 4) for x in wilson(round((eval_acc or 0) * eval_n), eval_n)],
        "unseen_pairs": len(pairs),
        "unseen_accuracy": round(right / len(pairs), 4),
        "unseen_wilson95": [round(low, 4), round(high, 4)],
        "untrained_unseen_accuracy": round(untrained_right / len(pairs), 4),
    }
    print(json.dumps(result), flush=True)
    print(
        f"steps={run.step} wall_s={wall:.1f} heldout_acc={eval_acc or 0:.4f} heldout_n={eval_n} "
        f"unseen_acc={right / len(pairs):.4f} untrained_unseen_acc={untrained_right / len(pairs):.4f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
