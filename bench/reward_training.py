"""Reward-model training: the grouped trainer vs TRL's RewardTrainer on the same pairs.

Data: k=4 completions per prompt, fully ranked, so each prompt gives C(4, 2) = 6 pairs.
The grouped arm (``training.core`` with ``grouped=True``) forwards each completion once per
step and scores all six pairs of its prompt from those four rewards (InstructGPT's trick);
TRL's ``RewardTrainer`` gets the same rankings expanded into pairs and forwards chosen and
rejected of every pair. Both train the same reward model (one saved folder, so the same
score head), on exactly the same token ids (TRL takes pre-tokenized ``chosen_ids`` /
``rejected_ids``), with the same pairs per optimizer step, learning rate and max length.

Before training, both compute the loss over every pair at initialisation; they must agree
(the benchmark stops if they differ by more than 1e-4): it shows both optimise the same
objective, so the speed comparison is fair.

    .venv/bin/python bench/reward_training.py [--quick] [--hidden 256] [--layers 4]

Prints the headline last: grouped_pairs_s trl_pairs_s ratio init_loss_grouped init_loss_trl.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.preference_common import StepClock, build_bench_model, device_name, synthetic_rankings
from training.core.configs import RewardConfig
from training.core.data import PreferenceData, PreferenceGroup
from training.core.runners import RunSpec, run_training


class _ClockReporter:
    """A ProgressReporter that timestamps each optimizer step's report."""

    def __init__(self) -> None:
        self.clock = StepClock()
        self.first_loss: float | None = None

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        if "loss" in metrics:
            self.clock.tick()
            if self.first_loss is None:
                self.first_loss = metrics["loss"]

    def log(self, line: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def grouped_init_loss(
    model_dir: Path, groups: list[PreferenceGroup], max_length: int, device: str
) -> float:
    """Mean Bradley-Terry loss over every pair at initialisation, the grouped way."""
    import torch

    from training.core import preference
    from training.core.hf import load_reward_model, load_tokenizer, reward_scores
    from training.core.losses import pairwise_bradley_terry_loss

    tokenizer = load_tokenizer(str(model_dir))
    model = load_reward_model(str(model_dir), tokenizer).to(device).eval()
    encoded = preference.encode_groups(
        groups, tokenizer, use_chat_template=False, max_length=max_length
    )
    total, pairs = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(encoded), 8):
            batch = preference._collate(encoded[start : start + 8], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            rewards = reward_scores(model, batch["input_ids"], batch["attention_mask"])
            loss, _ = pairwise_bradley_terry_loss(
                rewards,
                batch["winners"],
                batch["losers"],
                batch["pair_group"],
                reduction="pairs",
            )
            n = int(batch["winners"].numel())
            total, pairs = total + float(loss) * n, pairs + n
    return total / pairs


def trl_arm(
    model_dir: Path,
    groups: list[PreferenceGroup],
    *,
    pairs_per_step: int,
    steps: int,
    max_length: int,
    lr: float,
    out: Path,
) -> tuple[float, float, int]:
    """TRL's RewardTrainer on the expanded pairs: (init loss over all pairs, seconds, steps)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from training.core.data import encode_completion
    from training.core.hf import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    rows: list[dict[str, list[int]]] = []
    for g in groups:
        ids = [
            encode_completion(
                tokenizer, g.prompt, c, use_chat_template=False, max_length=max_length
            )[0]
            for c in g.completions
        ]
        rows.extend({"chosen_ids": ids[w], "rejected_ids": ids[r]} for w, r in g.pairs)
    dataset = Dataset.from_list(rows)
    clock = StepClock()

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            clock.tick()

    on_cpu = device_name() == "cpu"
    args = TRLRewardConfig(
        output_dir=str(out),
        per_device_train_batch_size=pairs_per_step,
        per_device_eval_batch_size=pairs_per_step,
        max_steps=steps,
        learning_rate=lr,
        max_length=max_length,
        logging_steps=steps,
        save_strategy="no",
        report_to="none",
        use_cpu=on_cpu,
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Clock()],
    )
    # Loss over every pair at initialisation, through TRL's own collator and compute_loss.
    total, count = 0.0, 0
    model = trainer.model
    assert model is not None  # the trainer was given one
    model.eval()
    with torch.inference_mode():
        for batch in trainer.get_eval_dataloader(dataset):
            loss = trainer.compute_loss(model, batch)
            n = int(batch["input_ids"].shape[0]) // 2
            total, count = total + float(loss) * n, count + n
    trainer.train()
    return total / count, clock.seconds(), clock.timed_steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps (< 1 min on 2 cores)")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--model", help="a local causal LM folder; default: a random bench model")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.steps, args.hidden, args.layers = 64, 5, 192, 3

    import torch

    from training.core.hf import load_reward_model, load_tokenizer

    work = Path(tempfile.mkdtemp(prefix="preflab-bench-rm-"))
    base = (
        Path(args.model)
        if args.model
        else build_bench_model(work / "base", hidden=args.hidden, layers=args.layers)
    )
    # One reward model folder (base + a seeded score head) for both arms.
    tokenizer = load_tokenizer(str(base))
    load_reward_model(str(base), tokenizer, seed=0).save_pretrained(work / "rm-init")
    tokenizer.save_pretrained(work / "rm-init")
    model_dir = work / "rm-init"

    groups = synthetic_rankings(args.prompts, args.k)
    pairs_per_prompt = args.k * (args.k - 1) // 2
    pairs_per_step = args.prompts_per_step * pairs_per_prompt
    device = device_name()
    print(
        f"model={base} device={device} threads={torch.get_num_threads()} prompts={args.prompts} "
        f"k={args.k} pairs_per_step={pairs_per_step} steps={args.steps} "
        f"max_length={args.max_length}",
        flush=True,
    )

    init_grouped = grouped_init_loss(model_dir, groups, args.max_length, device)
    reporter = _ClockReporter()
    config = RewardConfig(
        grouped=True,
        grouped_reduction="pairs",
        batch_size=args.prompts_per_step,
        max_steps=args.steps,
        logging_steps=1,
        learning_rate=1e-5,
        max_length=args.max_length,
    )
    run_training(
        RunSpec(kind="reward", config=config, model_path=str(model_dir), output_dir=work / "ours"),
        PreferenceData(train=groups),
        reporter,
    )
    grouped_seconds, grouped_steps = reporter.clock.seconds(), reporter.clock.timed_steps

    init_trl, trl_seconds, trl_steps = trl_arm(
        model_dir,
        groups,
        pairs_per_step=pairs_per_step,
        steps=args.steps,
        max_length=args.max_length,
        lr=1e-5,
        out=work / "trl",
    )
    if abs(init_grouped - init_trl) > 1e-4:
        raise SystemExit(f"the losses at initialisation differ: {init_grouped} vs {init_trl}")
    grouped_rate = grouped_steps * pairs_per_step / grouped_seconds
    trl_rate = trl_steps * pairs_per_step / trl_seconds
    print(
        f"grouped  steps={grouped_steps} seconds={grouped_seconds:.2f} pairs_s={grouped_rate:.1f}"
    )
    print(f"trl      steps={trl_steps} seconds={trl_seconds:.2f} pairs_s={trl_rate:.1f}")
    print(
        f"grouped_pairs_s={grouped_rate:.1f} trl_pairs_s={trl_rate:.1f} "
        f"ratio={grouped_rate / trl_rate:.2f} init_loss_grouped={init_grouped:.5f} "
        f"init_loss_trl={init_trl:.5f}"
    )


if __name__ == "__main__":
    main()
