"""DPO: the grouped trainer vs TRL's DPOTrainer on the same pairs.

Data: k=4 completions per prompt, fully ranked (C(4, 2) = 6 pairs per prompt). The grouped
arm (``training.core`` with ``grouped=True``) computes each completion's log-probability
under the policy and the reference once per step and scores all six pairs of its prompt
from those; TRL's ``DPOTrainer`` gets the rankings expanded into (prompt, chosen, rejected)
rows and runs policy and reference over chosen and rejected of every pair. Same model (the
reference is a frozen copy in both), beta, learning rate, max length and pairs per
optimizer step; neither precomputes reference log-probs.

The loss of the first step, computed before any update, is the loss at initialisation: the
policy equals the reference there, so both must report log 2 = 0.69315 (the benchmark stops
if they differ by more than 1e-4).

Peak memory: each trainer runs in a process of its own (``--arm``), which imports every
library both arms use before it measures its baseline. On a CPU the peak is the growth of
the process's resident high-water mark (``ru_maxrss``) from that baseline to the end of
training: the models, the optimizer state and the largest set of activations and logits
at once, everything the trainer adds. On a GPU it is ``torch.cuda.max_memory_allocated``
over the same span. The grouped trainer computes log-probs in chunks
(:mod:`training.core.logps`), so it must not need more than TRL on the same pairs.

    .venv/bin/python bench/dpo.py [--quick] [--hidden 256] [--layers 4]

Prints the headline last: grouped_pairs_s trl_pairs_s ratio init_loss_grouped init_loss_trl
grouped_peak_mb trl_peak_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.preference_common import (
    StepClock,
    build_bench_model,
    device_name,
    expanded_pairs,
    synthetic_rankings,
)
from bench.reward_training import _ClockReporter
from training.core.configs import DPOConfig
from training.core.data import PreferenceData, PreferenceGroup
from training.core.runners import RunSpec, run_training

BETA = 0.1
LR = 1e-5


def trl_arm(
    model_dir: Path,
    groups: list[PreferenceGroup],
    *,
    pairs_per_step: int,
    steps: int,
    max_length: int,
    out: Path,
) -> tuple[float, float, int]:
    """TRL's DPOTrainer on the expanded pairs: (first-step loss, seconds, timed steps)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    from training.core.hf import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    dataset = Dataset.from_list(
        [
            {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            for prompt, chosen, rejected in expanded_pairs(groups)
        ]
    )
    clock = StepClock()
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            clock.tick()

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    args = TRLDPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=pairs_per_step,
        max_steps=steps,
        learning_rate=LR,
        beta=BETA,
        max_length=max_length,
        truncation_mode="keep_end",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=device_name() == "cpu",
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        precompute_ref_log_probs=False,
        seed=0,
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_dir)),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Clock()],
    )
    trainer.train()
    return losses[0], clock.seconds(), clock.timed_steps


def grouped_arm(
    model_dir: Path,
    groups: list[PreferenceGroup],
    *,
    prompts_per_step: int,
    steps: int,
    max_length: int,
    out: Path,
) -> tuple[float, float, int]:
    """The grouped trainer on the rankings: (first-step loss, seconds, timed steps)."""
    reporter = _ClockReporter()
    config = DPOConfig(
        grouped=True,
        grouped_reduction="pairs",
        precompute_ref_log_probs=False,
        beta=BETA,
        batch_size=prompts_per_step,
        max_steps=steps,
        logging_steps=1,
        learning_rate=LR,
        max_length=max_length,
    )
    run_training(
        RunSpec(kind="dpo", config=config, model_path=str(model_dir), output_dir=out),
        PreferenceData(train=groups),
        reporter,
    )
    assert reporter.first_loss is not None
    return reporter.first_loss, reporter.clock.seconds(), reporter.clock.timed_steps


class PeakMemory:
    """The peak bytes a trainer adds over this process's baseline (see the docstring)."""

    def __init__(self) -> None:
        import resource

        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak_mb(self) -> float:
        import resource

        import torch

        if self.cuda:
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return (peak - self.base) / 2**20


def run_arm(args: argparse.Namespace) -> None:
    """One trainer in this process; prints its figures as a JSON line."""
    # Both arms' libraries, before the baseline: the peak counts what training adds.
    import datasets  # noqa: F401
    import torch  # noqa: F401
    import trl  # noqa: F401
    from trl import DPOTrainer  # noqa: F401

    import training.core.preference  # noqa: F401

    groups = synthetic_rankings(args.prompts, args.k)
    memory = PeakMemory()
    arm = grouped_arm if args.arm == "grouped" else trl_arm
    options: dict[str, Any] = {"steps": args.steps, "max_length": args.max_length}
    if args.arm == "grouped":
        options["prompts_per_step"] = args.prompts_per_step
    else:
        options["pairs_per_step"] = args.prompts_per_step * args.k * (args.k - 1) // 2
    init_loss, seconds, steps = arm(
        Path(args.model), groups, out=Path(tempfile.mkdtemp(prefix="preflab-bench-arm-")), **options
    )
    figures = {"init_loss": init_loss, "seconds": seconds, "steps": steps}
    print(json.dumps({**figures, "peak_mb": memory.peak_mb()}), flush=True)


def spawn_arm(arm: str, args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """Run one arm in a fresh process and read back its figures."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--arm",
        arm,
        "--model",
        str(model_dir),
    ]
    for name in ("prompts", "k", "prompts_per_step", "steps", "max_length"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {arm} arm failed:\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


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
    parser.add_argument("--arm", choices=["grouped", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        run_arm(args)
        return
    if args.quick:
        args.prompts, args.steps, args.hidden, args.layers = 64, 5, 192, 3

    import torch

    work = Path(tempfile.mkdtemp(prefix="preflab-bench-dpo-"))
    model_dir = (
        Path(args.model)
        if args.model
        else build_bench_model(work / "base", hidden=args.hidden, layers=args.layers)
    )
    pairs_per_step = args.prompts_per_step * args.k * (args.k - 1) // 2
    print(
        f"model={model_dir} device={device_name()} threads={torch.get_num_threads()} "
        f"prompts={args.prompts} k={args.k} pairs_per_step={pairs_per_step} steps={args.steps} "
        f"max_length={args.max_length} beta={BETA}",
        flush=True,
    )
    grouped = spawn_arm("grouped", args, model_dir)
    trl = spawn_arm("trl", args, model_dir)
    if abs(grouped["init_loss"] - trl["init_loss"]) > 1e-4:
        raise SystemExit(
            f"the losses at initialisation differ: {grouped['init_loss']} vs {trl['init_loss']}"
        )
    grouped_rate = grouped["steps"] * pairs_per_step / grouped["seconds"]
    trl_rate = trl["steps"] * pairs_per_step / trl["seconds"]
    print(
        f"grouped  steps={grouped['steps']} seconds={grouped['seconds']:.2f} "
        f"pairs_s={grouped_rate:.1f} peak_mb={grouped['peak_mb']:.0f}"
    )
    print(
        f"trl      steps={trl['steps']} seconds={trl['seconds']:.2f} pairs_s={trl_rate:.1f} "
        f"peak_mb={trl['peak_mb']:.0f}"
    )
    print(
        f"grouped_pairs_s={grouped_rate:.1f} trl_pairs_s={trl_rate:.1f} "
        f"ratio={grouped_rate / trl_rate:.2f} init_loss_grouped={grouped['init_loss']:.5f} "
        f"init_loss_trl={trl['init_loss']:.5f} grouped_peak_mb={grouped['peak_mb']:.0f} "
        f"trl_peak_mb={trl['peak_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
