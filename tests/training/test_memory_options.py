"""What fits a real model in memory, per kind of run, on the tiny model: gradient
checkpointing (same losses, layers really recomputed) and LoRA (adapters trained, the
base frozen, a merged model that loads)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.training import test_runner_dpo as dpo
from tests.training import test_runner_kto as kto
from tests.training import test_runner_ppo as ppo
from tests.training import test_runner_reward as reward
from tests.training import test_runner_sft as sft
from training.core.configs import GRPOConfig
from training.core.data import PreferenceData, PromptData, SFTData, UnpairedData
from training.core.reporting import ListReporter
from training.core.runners import RunResult, RunSpec, run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reward_model_path(tiny_reward_model_path: Path) -> Path:
    return tiny_reward_model_path


def run_kind(
    kind: str, model: Path, reward_model: Path, output_dir: Path, **changes: Any
) -> tuple[RunResult, ListReporter]:
    """Two optimizer steps (rollouts for PPO and GRPO) of ``kind`` with ``changes``."""
    reporter = ListReporter()
    data: Any
    if kind == "sft":
        config: Any = sft.config(max_steps=2, **changes)
        data = SFTData(train=sft.EXAMPLES)
    elif kind == "dpo":
        config, data = dpo.config(max_steps=2, **changes), PreferenceData(train=dpo.GROUPS)
    elif kind == "reward":
        config = reward.config(max_steps=2, **changes)
        data = PreferenceData(train=reward.GROUPS)
    elif kind == "kto":
        config, data = kto.config(max_steps=2, **changes), UnpairedData(train=kto.EXAMPLES)
    elif kind == "ppo":
        config = dataclasses.replace(ppo.FAST, max_steps=2, ppo_epochs=1, **changes)
        data = PromptData(train=ppo.PROMPTS)
    else:
        fields = {f.name for f in dataclasses.fields(GRPOConfig)}
        values = {k: v for k, v in ppo.FAST.to_dict().items() if k in fields}
        config = GRPOConfig(**{**values, "max_steps": 2, "ppo_epochs": 1, **changes})
        data = PromptData(train=ppo.PROMPTS)
    spec = RunSpec(
        kind=kind,  # type: ignore[arg-type]
        config=config,
        model_path=str(model),
        output_dir=output_dir,
        reward_model_path=str(reward_model) if kind in ("ppo", "grpo") else None,
        device="cpu",
    )
    return run_training(spec, data, reporter), reporter


def losses(reporter: ListReporter) -> list[float]:
    return [r.metrics["loss"] for r in reporter.reports if "loss" in r.metrics]


@pytest.fixture
def checkpoint_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the activation checkpoints transformers' layers take."""
    import transformers.modeling_utils as modeling_utils

    calls: list[int] = []
    original = modeling_utils.checkpoint

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "checkpoint", counting)
    yield calls


# Gradient checkpointing: on a CPU too, TRL's KTO trainer included (transformers 5.19, TRL 1.16).
@pytest.mark.parametrize("kind", ["sft", "dpo", "kto", "ppo"])
def test_it_trains_the_same_with_gradient_checkpointing(
    kind: str,
    tiny_model_path: Path,
    reward_model_path: Path,
    tmp_path: Path,
    checkpoint_calls: list[int],
) -> None:
    plain, plain_reporter = run_kind(kind, tiny_model_path, reward_model_path, tmp_path / "a")
    assert not checkpoint_calls
    result, reporter = run_kind(
        kind, tiny_model_path, reward_model_path, tmp_path / "b", gradient_checkpointing=True
    )

    assert plain.status == result.status == "succeeded"
    assert checkpoint_calls, "no layer was checkpointed"
    assert losses(reporter) and len(losses(reporter)) == len(losses(plain_reporter))
    torch.testing.assert_close(losses(reporter), losses(plain_reporter), rtol=1e-5, atol=1e-6)


def _adapters(checkpoint: Path) -> dict[str, torch.Tensor]:
    folder = checkpoint / "policy" if (checkpoint / "policy").is_dir() else checkpoint
    return load_file(str(folder / "adapter_model.safetensors"))


LOADERS: dict[str, Callable[[Path], Any]] = {
    "reward": AutoModelForSequenceClassification.from_pretrained,
}


@pytest.mark.parametrize("kind", ["reward", "dpo", "sft", "kto", "ppo", "grpo"])
def test_lora_trains_adapters_on_a_frozen_base_and_saves_a_merged_model(
    kind: str, tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    result, _ = run_kind(
        kind, tiny_model_path, reward_model_path, tmp_path, use_lora=True, lora_r=4, save_steps=2
    )

    assert result.status == "succeeded" and result.final_dir is not None
    assert result.checkpoint_dir is not None
    adapters = _adapters(result.checkpoint_dir)
    trained_b = [name for name, value in adapters.items() if "lora_B" in name and value.any()]
    assert trained_b, "every adapter is still at its zero start"  # lora_B starts at 0
    files = {p.name for p in result.final_dir.iterdir()}
    assert "model.safetensors" in files and not any(f.startswith("adapter") for f in files)
    merged = LOADERS.get(kind, AutoModelForCausalLM.from_pretrained)(result.final_dir)
    state, base = merged.state_dict(), load_file(str(tiny_model_path / "model.safetensors"))
    # Frozen: what has no adapter is the base, bit for bit; merged: the adapted layers moved.
    for name in ("model.embed_tokens.weight", "model.norm.weight"):
        assert torch.equal(state[name], base[name]), name
    adapted = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(state[adapted], base[adapted])
    config = json.loads((result.final_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
