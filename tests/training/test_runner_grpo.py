"""The GRPO/RLOO runner on the tiny offline model, and reward normalisation in PPO and GRPO."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.training.test_runner_ppo import (
    FAST,
    PROMPTS,
    _build_reward_model_for_a_direction,
    _state,
)
from training.core.configs import GRPOConfig
from training.core.data import PromptData
from training.core.reporting import ListReporter
from training.core.runners import RunSpec, TrainingError, latest_checkpoint
from training.core.scoring import RewardStats

# PPO's quick settings, without the value head's: 4 prompts x 2 samples per rollout.
GRPO_FAST = GRPOConfig(
    **{
        name: value
        for name, value in FAST.to_dict().items()
        if name in {f.name for f in dataclasses.fields(GRPOConfig)}
    }
)
SHARED_METRICS = (
    "score",
    "score/task",
    "kl",
    "kl_coef",
    "reward",
    "entropy",
    "response_length",
    "loss",
    "loss/policy",
    "policy/clipfrac",
    "policy/approx_kl",
    "policy/ratio",
    "reward/group_std",
)


@pytest.fixture(scope="module")
def reward_model_path(tiny_reward_model_path: Path) -> Path:
    return tiny_reward_model_path


def _spec(
    tiny_model_path: Path,
    reward_model_path: Path | None,
    output_dir: Path,
    *,
    reward_stats: RewardStats | None = None,
    **config: Any,
) -> RunSpec:
    return RunSpec(
        kind="grpo",
        config=dataclasses.replace(GRPO_FAST, **config),
        model_path=str(tiny_model_path),
        output_dir=output_dir,
        reward_model_path=str(reward_model_path) if reward_model_path else None,
        reward_stats=reward_stats,
        device="cpu",
    )


def test_it_trains_the_policy_without_a_value_head_and_reports_every_metric(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    import torch

    from training.core.grpo import run_grpo

    reporter = ListReporter()
    data = PromptData(train=PROMPTS, eval=PROMPTS[:2])
    result = run_grpo(_spec(tiny_model_path, reward_model_path, tmp_path), data, reporter)

    assert result.status == "succeeded" and result.steps == 3
    train_reports = [r for r in reporter.reports if "score" in r.metrics]
    assert [r.step for r in train_reports] == [1, 2, 3]
    for report in train_reports:
        m = report.metrics
        assert set(SHARED_METRICS) <= set(m)
        assert not any(name.startswith("value") or name == "loss/value" for name in m)
        assert all(math.isfinite(v) for v in m.values()), m
        assert m["reward"] == pytest.approx(m["score"] - m["kl_coef"] * m["kl"], abs=1e-4)
        assert m["reward/group_std"] > 0  # two different samples score differently
    # The first rollout samples from the reference itself, and its first update starts at
    # the sampling policy: no KL, ratio 1 on average.
    assert abs(train_reports[0].metrics["kl"]) < 1e-4
    assert set(result.eval_metrics) == {"eval/score", "eval/kl", "eval/response_length"}
    before, after = _state(tiny_model_path), _state(result.final_dir)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint == tmp_path / "checkpoints" / "checkpoint-3"
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "ppo_state.json").is_file()
    assert not (checkpoint / "value_head.pt").exists()


@pytest.mark.parametrize(
    ("advantage", "use_lora"),
    [("grpo", False), ("rloo", False), ("grpo", True)],
    ids=["grpo", "rloo", "grpo-lora"],
)
def test_it_resumes_exactly_where_an_uninterrupted_run_would_be(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path, advantage: str, use_lora: bool
) -> None:
    from training.core.grpo import run_grpo

    data = PromptData(train=PROMPTS)
    options: dict[str, Any] = {
        "max_steps": 2,
        "adaptive_kl": True,
        "kl_horizon": 8,
        "advantage": advantage,
        "use_lora": use_lora,
    }
    straight = ListReporter()
    run_grpo(_spec(tiny_model_path, reward_model_path, tmp_path / "a", **options), data, straight)
    spec = _spec(tiny_model_path, reward_model_path, tmp_path / "b", **options)
    stopped = run_grpo(spec, data, ListReporter(stop_at_step=1))
    assert stopped.status == "cancelled" and stopped.steps == 1
    assert stopped.checkpoint_dir is not None
    assert json.loads((stopped.checkpoint_dir / "ppo_state.json").read_text())["rollout"] == 1
    resumed = ListReporter()
    run_grpo(dataclasses.replace(spec, resume_from=stopped.checkpoint_dir), data, resumed)

    expected, got = straight.reports[1].metrics, resumed.reports[0].metrics
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
    if use_lora:
        assert (stopped.checkpoint_dir / "policy" / "adapter_model.safetensors").is_file()
        assert not (tmp_path / "b" / "final" / "adapter_config.json").exists()  # merged


def test_it_raises_the_reward_models_score(tiny_model_path: Path, tmp_path: Path) -> None:
    from training.core.grpo import run_grpo

    reward_path = _build_reward_model_for_a_direction(tiny_model_path, tmp_path / "reward")
    reporter = ListReporter()
    spec = _spec(
        tiny_model_path,
        reward_path,
        tmp_path / "run",
        learning_rate=1e-2,
        rollout_batch_prompts=8,
        rollout_k=4,
        minibatch_size=16,
        batch_size=16,
        ppo_epochs=4,
        max_new_tokens=4,
        init_kl_coef=0.01,
        max_steps=12,
        seed=3,
    )
    run_grpo(spec, PromptData(train=PROMPTS), reporter)

    scores = [r.metrics["score"] for r in reporter.reports]
    assert len(scores) == 12
    assert sum(scores[-3:]) / 3 > sum(scores[:3]) / 3 + 0.5, scores


def test_it_refuses_a_run_of_one_sample_per_prompt_or_without_a_reward_model(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    from training.core.grpo import run_grpo

    data = PromptData(train=PROMPTS)
    with pytest.raises(Exception, match="rollout_k"):
        run_grpo(
            _spec(tiny_model_path, reward_model_path, tmp_path, rollout_k=1), data, ListReporter()
        )
    with pytest.raises(TrainingError, match="reward model"):
        run_grpo(_spec(tiny_model_path, None, tmp_path), data, ListReporter())


# --- reward normalisation (shared by PPO and GRPO) ----------------------------------------


@pytest.mark.parametrize("kind", ["ppo", "grpo"])
def test_it_trains_on_scores_normalised_by_the_reward_models_stats(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path, kind: str
) -> None:
    from training.core.runners import run_training

    # A reference maximum below anything: every sample is "beyond the reference".
    stats = RewardStats(mean=0.25, std=0.5, count=10, reference="chosen", max=-1e9)
    config = FAST if kind == "ppo" else GRPO_FAST
    spec = RunSpec(
        kind=kind,  # type: ignore[arg-type]
        config=dataclasses.replace(
            config, normalize_rewards=True, max_steps=1, reward_clip=1.5, length_penalty=0.1
        ),
        model_path=str(tiny_model_path),
        output_dir=tmp_path,
        reward_model_path=str(reward_model_path),
        reward_stats=stats,
        device="cpu",
    )
    reporter = ListReporter()
    run_training(spec, PromptData(train=PROMPTS), reporter)

    (report,) = reporter.reports
    m = report.metrics
    assert any("(score - 0.25) / 0.5" in line for line in reporter.lines)
    # The seeded random head scores these completions within +-0.5 of 0.25 (so the clip
    # at 1.5 sd is not reached) and the mean length is known: the task reward is the
    # normalised mean score minus 0.1 per token.
    assert abs(m["score"] - 0.25) / 0.5 < 1.5
    assert m["score/task"] == pytest.approx(
        (m["score"] - 0.25) / 0.5 - 0.1 * m["response_length"], abs=1e-4
    )
    assert m["reward"] == pytest.approx(m["score/task"] - m["kl_coef"] * m["kl"], abs=1e-4)
    assert m["beyond_reference"] == 1.0


def test_it_refuses_to_normalise_without_the_reward_models_stats(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    from training.core.grpo import run_grpo

    spec = _spec(tiny_model_path, reward_model_path, tmp_path, normalize_rewards=True)
    with pytest.raises(TrainingError, match="normalize_rewards"):
        run_grpo(spec, PromptData(train=PROMPTS), ListReporter())
    assert not (tmp_path / "checkpoints").exists()
