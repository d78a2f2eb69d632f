"""One entry point for every kind of training run: :func:`run_training`.

The Celery task (through ``training.runs``) builds a :class:`RunSpec` and the run's data
(:mod:`training.core.data`), and calls :func:`run_training` with a progress reporter. The
runner loads the model, trains, reports every ``logging_steps`` optimizer steps, checks
``reporter.should_stop()`` between steps, writes checkpoints under
``output_dir/checkpoints/`` and, when it finishes, the trained model under
``output_dir/final/`` (a plain ``save_pretrained`` folder with its tokenizer: LoRA adapters
are merged, so generation backends load it like any model).

Layout of ``output_dir``::

    checkpoints/checkpoint-<step>/   resumable state (model, optimizer, scheduler, RNG, step)
    final/                           the trained model and tokenizer (succeeded runs only)

Nothing here imports Django; torch, transformers, peft and TRL are imported when a run starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from training.core.configs import CommonConfig
from training.core.data import PreferenceData, PromptData, RunData, SFTData, UnpairedData
from training.core.reporting import ProgressReporter
from training.core.scoring import RewardStats

__all__ = [
    "CHECKPOINTS",
    "FINAL",
    "RunResult",
    "RunSpec",
    "TrainingError",
    "latest_checkpoint",
    "run_training",
]

Kind = Literal["reward", "dpo", "ppo", "sft", "kto", "grpo"]
CHECKPOINTS = "checkpoints"
FINAL = "final"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
# A checkpoint is complete once its state file exists: the Trainer writes
# trainer_state.json after the weights, optimizer and RNG state; PPO writes ppo_state.json
# into a temporary folder that is renamed into place.
_STATE_FILES = ("trainer_state.json", "ppo_state.json")


class TrainingError(RuntimeError):
    """A run cannot go on for a reason a person can fix; the message says which."""


@dataclass(frozen=True)
class RunSpec:
    """Everything a runner needs besides the data and the reporter."""

    kind: Kind
    config: CommonConfig
    model_path: str
    """The base (and reference) model: a local folder or a hub id; a causal LM."""
    output_dir: Path
    use_chat_template: bool = False
    """Render prompts with the tokenizer's chat template, as the base model's generation does."""
    reward_model_path: str | None = None
    """PPO and GRPO: the ``final/`` folder of a finished reward run."""
    reward_stats: RewardStats | None = None
    """PPO and GRPO: the reward model's score mean and spread on its reference answers,
    which ``normalize_rewards`` divides by."""
    resume_from: Path | None = None
    """A ``checkpoints/checkpoint-<step>`` folder of an earlier attempt at this run."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1``...; None picks cuda when available, else cpu."""


@dataclass(frozen=True)
class RunResult:
    status: Literal["succeeded", "cancelled"]
    steps: int
    """Optimizer steps done in all (PPO: rollouts), resumed attempts included."""
    final_dir: Path | None
    """``output_dir/final`` when the run succeeded, else None."""
    checkpoint_dir: Path | None
    """The newest checkpoint, if any was written."""
    eval_metrics: dict[str, float] = field(default_factory=dict)
    """Metrics on the held-out split at the end, names prefixed ``eval/``."""


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints``, or None.

    A folder a killed worker left half-written (no state file yet) is skipped, so a resume
    never starts from it.
    """
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir()
        and (m := _CHECKPOINT_NAME.match(p.name))
        and any((p / name).is_file() for name in _STATE_FILES)
    ]
    return max(found)[1] if found else None


def run_training(spec: RunSpec, data: RunData, reporter: ProgressReporter) -> RunResult:
    """Train ``spec.kind`` on ``data``; returns when done or when the reporter asks to stop.

    Raises :class:`TrainingError` for problems a person can fix (no training data, a
    missing model folder, a reward model PPO cannot load); anything else is a bug or an
    environment failure and propagates as is.
    """
    spec.config.validate()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if spec.config.world_size != world_size:
        raise TrainingError(
            f"this run asks for {spec.config.world_size} processes but runs in {world_size}: "
            "start it with training.core.launch.run_launched"
        )
    if spec.kind in ("reward", "dpo"):
        from training.core.preference import run_preference

        return run_preference(spec, _expect(spec, data, PreferenceData), reporter)
    if spec.kind == "sft":
        from training.core.sft import run_sft

        return run_sft(spec, _expect(spec, data, SFTData), reporter)
    if spec.kind == "ppo":
        from training.core.ppo import run_ppo

        return run_ppo(spec, _expect(spec, data, PromptData), reporter)
    if spec.kind == "kto":
        from training.core.kto import run_kto

        return run_kto(spec, _expect(spec, data, UnpairedData), reporter)
    if spec.kind == "grpo":
        from training.core.grpo import run_grpo

        return run_grpo(spec, _expect(spec, data, PromptData), reporter)
    raise TrainingError(f"unknown kind of run {spec.kind!r}")


_D = TypeVar("_D", PreferenceData, SFTData, PromptData, UnpairedData)


def _expect(spec: RunSpec, data: RunData, cls: type[_D]) -> _D:
    if not isinstance(data, cls):
        raise TypeError(f"a {spec.kind} run trains on {cls.__name__}, not {type(data).__name__}")
    return data
