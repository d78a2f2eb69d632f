"""Scale-out: the same work in one process and in two, with the results compared.

Training: one reward model (the same base and seeded score head) trained for the same
steps on the same global batches, once in this process and once as a 2-process torchrun
group on the gloo backend (CPU) or NCCL (GPUs) (:mod:`training.core.launch`), each process
taking half of every batch. ``max_loss_diff`` is the largest difference between the two
loss curves, step by step: it must stay at rounding level (the tests hold it under 1e-4; see
``tests/training/test_launch.py``). ``single_pairs_s`` and ``multi_pairs_s`` are preference
pairs trained per second over the Trainer's own ``train_runtime`` of each run (all steps;
loading and, for two processes, the launch are left out; rank 0 measures the group's).

Generation: the same job served by one and by two generation workers
(``bench/generation_workers.py``): tokens/s, with a check that both runs wrote exactly k
completions per prompt, none twice, and the same texts (``gen_same_texts``).

On 2 CPU cores the speed-up is small or negative (two processes share the cores the one
process already used, and add an all-reduce per step); what the numbers must show is that
the results agree and nothing is lost.

    .venv/bin/python bench/distributed.py [--quick] [--hidden 256] [--layers 4]

Prints the headline last:
``procs=2 max_loss_diff=… single_pairs_s=… multi_pairs_s=… gen_single_tok_s=… gen_multi_tok_s=…
gen_same_texts=…``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.generation_workers import generation_throughput
from bench.preference_common import build_bench_model, synthetic_rankings
from training.core.configs import RewardConfig
from training.core.data import PreferenceData
from training.core.launch import run_launched
from training.core.runners import RunSpec, run_training

PROCESSES = 2


_RUNTIME = re.compile(r"^training took ([0-9.]+) s$")


class _CurveReporter:
    """Keeps each step's loss and the Trainer's ``train_runtime`` (its "training took" line)."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}
        self.seconds: float | None = None

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        if "loss" in metrics:
            self.losses[step] = metrics["loss"]

    def log(self, line: str) -> None:
        if match := _RUNTIME.match(line):
            self.seconds = float(match.group(1))

    def should_stop(self) -> bool:
        return False

    def steps_per_s(self) -> float:
        if not self.seconds:
            raise RuntimeError("the run did not say how long it trained")
        return len(self.losses) / self.seconds


def training_comparison(
    model_dir: Path, data: PreferenceData, config: RewardConfig, work: Path
) -> tuple[float, float, float]:
    """Train in 1 and in ``PROCESSES`` processes: (max loss difference, pairs/s, pairs/s)."""
    pairs_per_step = sum(len(g.pairs) for g in data.train[: config.batch_size])

    def spec(cfg: RewardConfig, out: str) -> RunSpec:
        return RunSpec(kind="reward", config=cfg, model_path=str(model_dir), output_dir=work / out)

    single = _CurveReporter()
    run_training(spec(config, "single"), data, single)
    multi = _CurveReporter()
    multi_config = dataclasses.replace(config, num_processes=PROCESSES)
    result = run_launched(spec(multi_config, "multi"), data, multi)
    if result.status != "succeeded" or list(multi.losses) != list(single.losses):
        raise SystemExit(f"the runs differ in their steps: {single.losses} vs {multi.losses}")
    diff = max(abs(single.losses[s] - multi.losses[s]) for s in single.losses)
    return (
        diff,
        single.steps_per_s() * pairs_per_step,
        multi.steps_per_s() * pairs_per_step,
    )


def _number(value: float) -> str:
    return f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small model, few steps")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.steps, args.hidden, args.layers = 16, 4, 64, 2
        args.prompts_per_step, args.max_length = 4, 64

    from training.core.hf import load_reward_model, load_tokenizer

    work = Path(tempfile.mkdtemp(prefix="preflab-bench-dist-"))
    base = build_bench_model(work / "base", hidden=args.hidden, layers=args.layers)
    # One reward model folder (base + a seeded score head) for both runs.
    tokenizer = load_tokenizer(str(base))
    load_reward_model(str(base), tokenizer, seed=0).save_pretrained(work / "rm-init")
    tokenizer.save_pretrained(work / "rm-init")

    data = PreferenceData(train=tuple(synthetic_rankings(args.prompts, args.k)), eval=())
    config = RewardConfig(
        learning_rate=1e-4,
        batch_size=args.prompts_per_step,
        max_steps=args.steps,
        logging_steps=1,
        max_length=args.max_length,
    )
    diff, single_pairs_s, multi_pairs_s = training_comparison(work / "rm-init", data, config, work)
    gen_single, gen_multi, same_texts = generation_throughput(args.quick)
    print(
        f"procs={PROCESSES} max_loss_diff={diff:.2e} single_pairs_s={single_pairs_s:.1f} "
        f"multi_pairs_s={multi_pairs_s:.1f} gen_single_tok_s={_number(gen_single)} "
        f"gen_multi_tok_s={_number(gen_multi)} gen_same_texts={same_texts}"
    )


if __name__ == "__main__":
    main()
