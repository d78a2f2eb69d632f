"""KTO runs (``training.core.kto``, TRL's KTOTrainer) on the tiny model, on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from training.core.configs import KTOConfig
from training.core.data import UnpairedData, UnpairedExample, encode_completion
from training.core.hf import load_tokenizer
from training.core.kto import encode_unpaired
from training.core.reporting import ListReporter
from training.core.runners import RunSpec, TrainingError, run_training

CAPITAL = "What is the capital of France?"
NICE = [{"role": "user", "content": "Say something nice."}]
EXAMPLES = (
    UnpairedExample(CAPITAL, "The capital of France is Paris.", True),
    UnpairedExample(CAPITAL, "Berlin.", False),
    UnpairedExample("Say something nice.", "Thank you, you are kind!", True),
    UnpairedExample("Say something nice.", "No.", False),
    UnpairedExample("Can you explain photosynthesis?", "Plants use light.", True),
    UnpairedExample("Can you explain photosynthesis?", "Maybe.", False),
)


def config(**changes: object) -> KTOConfig:
    values: dict[str, object] = {
        "learning_rate": 1e-3,
        "batch_size": 2,
        "max_steps": 3,
        "logging_steps": 1,
        "max_length": 64,
    }
    return KTOConfig(**{**values, **changes})  # type: ignore[arg-type]


def run(model_path: Path, output_dir: Path, cfg: KTOConfig, data: UnpairedData) -> tuple:  # type: ignore[type-arg]
    reporter = ListReporter()
    spec = RunSpec(
        kind="kto", config=cfg, model_path=str(model_path), output_dir=output_dir, device="cpu"
    )
    return run_training(spec, data, reporter), reporter


def test_it_hands_trl_the_token_ids_generation_reads(tiny_model_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_path))
    example = UnpairedExample(NICE, "Thank you!", True)  # a conversation: the chat template

    (encoded,) = encode_unpaired([example], tokenizer, use_chat_template=False, max_length=64)

    ids, prompt_length = encode_completion(
        tokenizer, NICE, "Thank you!", use_chat_template=False, max_length=64
    )
    assert encoded == {
        "prompt_ids": ids[:prompt_length],
        "completion_ids": ids[prompt_length:],
        "label": True,
    }
    assert encoded["completion_ids"][-1] == tokenizer.eos_token_id


def test_it_trains_on_good_and_bad_answers_and_saves_a_causal_lm(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    data = UnpairedData(train=EXAMPLES, eval=EXAMPLES[:4])

    result, reporter = run(tiny_model_path, tmp_path, config(), data)

    assert result.status == "succeeded" and result.steps == 3
    train_reports = [r for r in reporter.reports if "loss" in r.metrics]
    assert [r.step for r in train_reports] == [1, 2, 3]
    assert {"loss", "kl"} <= set(train_reports[0].metrics)
    # A batch reports the rewards of the labels it holds (desirable: chosen).
    seen = set().union(*(r.metrics for r in train_reports))
    assert {"rewards/chosen", "rewards/rejected"} <= seen
    # At step 0 the policy is the reference: every implicit reward and the KL are 0, so
    # each answer's loss is 1 - sigmoid(0) = 0.5 (weights 1).
    assert train_reports[0].metrics["loss"] == pytest.approx(0.5, abs=1e-4)
    assert "eval/loss" in result.eval_metrics
    assert any("3 desirable, 3 undesirable" in line for line in reporter.lines)
    assert result.final_dir is not None
    trained = AutoModelForCausalLM.from_pretrained(result.final_dir)
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], base[name])


def test_it_needs_both_kinds_of_label(tiny_model_path: Path, tmp_path: Path) -> None:
    only_good = UnpairedData(train=[e for e in EXAMPLES if e.desirable])

    with pytest.raises(TrainingError, match="both desirable and undesirable"):
        run(tiny_model_path, tmp_path, config(), only_good)


def test_its_config_needs_a_batch_for_the_kl_estimate() -> None:
    assert [e.field for e in config(batch_size=1).errors()] == ["batch_size"]
