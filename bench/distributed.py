"""Scale-out: the same work in one process and in two, with the results compared.

Training: one reward model (the same base and seeded score head) trained for the same
steps on the same global batches, once in this process and once as a 2-process torchrun
group on the gloo backend (CPU) or NCCL (GPUs) (:mod:`training.core.launch`), each process
taking half of every batch. ``max_loss_diff`` is the largest difference between the two
loss curves, step by step, at full precision: it must stay at rounding level (the tests hold
it under 1e-4; see ``tests/training/test_launch.py``). Both curves come from a Trainer
callback that rank 0 writes to a file (:mod:`bench.step_clock`), not from the reported
metrics. ``single_pairs_s`` and
``multi_pairs_s`` are preference pairs trained per second, from rank 0's wall clock
(``time.perf_counter``) at the end of each step: one over the median step time, the first
step left out (loading, the launch and the first step's one-off costs are not counted, and a
moment when another process takes the cores does not move it); no collective is added to
time it (rank 0 ends each step after the gradients' all-reduce, at the group's pace).

Generation: the same job served by one and by two generation workers
(``bench/generation_workers.py``): tokens/s, with a check that both runs wrote exactly k
completions per prompt, none twice, and the same texts (``gen_same_texts``).

On 2 CPU cores the two processes share the cores the one process already used, and add an
all-reduce per step; what the numbers must show is that the results agree and nothing is
lost. The rates are not like for like on a CPU: torchrun gives each rank one thread
(``OMP_NUM_THREADS=1``) while the one process uses torch's default of one per core, and on a
machine busy with other work those threads lose much of their time waiting for each other
(measured: the 2-process run 4x faster per step on a small model while the load average
was 7 to 10).

    .venv/bin/python bench/distributed.py [--quick] [--hidden 256] [--layers 4]

Prints the headline last:
``procs=2 max_loss_diff=… single_pairs_s=… multi_pairs_s=… gen_single_tok_s=… gen_multi_tok_s=…
gen_same_texts=…``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench import step_clock
from bench.generation_workers import generation_throughput
from bench.preference_common import build_bench_model, synthetic_rankings
from training.core.configs import RewardConfig
from training.core.data import PreferenceData
from training.core.launch import run_launched
from training.core.reporting import NullReporter
from training.core.runners import RunSpec, run_training

PROCESSES = 2


def training_comparison(
    model_dir: Path, data: PreferenceData, config: RewardConfig, work: Path
) -> tuple[float, float, float]:
    """Train in 1 and in ``PROCESSES`` processes: (max loss difference, pairs/s, pairs/s).

    Both from :mod:`bench.step_clock`'s files: the losses at full precision, the rates
    between the ends of the first and the last step by rank 0's wall clock.
    """
    pairs_per_step = sum(len(g.pairs) for g in data.train[: config.batch_size])

    def spec(cfg: RewardConfig, out: str) -> RunSpec:
        return RunSpec(kind="reward", config=cfg, model_path=str(model_dir), output_dir=work / out)

    step_clock.install()
    single_steps, multi_steps = work / "single-steps.jsonl", work / "multi-steps.jsonl"
    os.environ[step_clock.ENV] = str(single_steps)
    try:
        run_training(spec(config, "single"), data, NullReporter())
    finally:
        del os.environ[step_clock.ENV]
    multi_config = dataclasses.replace(config, num_processes=PROCESSES)
    site = step_clock.site_dir(work / "site")
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, step_clock.ENV: str(multi_steps), "PYTHONPATH": pythonpath}
    result = run_launched(spec(multi_config, "multi"), data, NullReporter(), env=env)
    single_times, single_losses = step_clock.read_steps(single_steps)
    multi_times, multi_losses = step_clock.read_steps(multi_steps)
    if result.status != "succeeded" or list(multi_losses) != list(single_losses):
        raise SystemExit(f"the runs differ in their steps: {single_losses} vs {multi_losses}")
    diff = max(abs(single_losses[s] - multi_losses[s]) for s in single_losses)
    return (
        diff,
        step_clock.steps_per_s(single_times) * pairs_per_step,
        step_clock.steps_per_s(multi_times) * pairs_per_step,
    )


def _number(value: float) -> str:
    return f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small model, 24 steps (under a minute on 2 cores)"
    )
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.steps, args.hidden, args.layers = 16, 24, 64, 2
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
