"""SFT runs (``training.core.sft``) on the tiny model, on CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from training.core.configs import SFTConfig
from training.core.data import PreferenceData, SFTData, SFTExample, encode_completion
from training.core.hf import load_tokenizer
from training.core.reporting import ListReporter
from training.core.runners import RunResult, RunSpec, TrainingError, run_training
from training.core.sft import run_sft

EXAMPLES = (
    SFTExample(
        prompt="What is the capital of France?", completion="The capital of France is Paris."
    ),
    SFTExample(prompt="Say something nice.", completion="Thank you!"),
    SFTExample(
        prompt=[{"role": "user", "content": "Can you explain photosynthesis?"}],
        completion="Plants use light to turn water and carbon dioxide into sugar.",
    ),
)


def config(**changes: object) -> SFTConfig:
    base = SFTConfig(learning_rate=1e-3, batch_size=3, max_steps=3, logging_steps=1, max_length=64)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(
    model_path: Path,
    output_dir: Path,
    cfg: SFTConfig,
    data: SFTData | None = None,
    reporter: ListReporter | None = None,
    resume_from: Path | None = None,
) -> tuple[RunResult, ListReporter]:
    reporter = reporter or ListReporter()
    spec = RunSpec(
        kind="sft",
        config=cfg,
        model_path=str(model_path),
        output_dir=output_dir,
        resume_from=resume_from,
        device="cpu",
    )
    result = run_training(spec, data or SFTData(train=EXAMPLES, eval=EXAMPLES[:2]), reporter)
    return result, reporter


def hand_token_mean_nll(
    model_path: Path, examples: tuple[SFTExample, ...], prompt_too: bool
) -> float:
    """Mean -log p(token | prefix) over every trained token of every example."""
    tokenizer = load_tokenizer(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    total, count = 0.0, 0
    for example in examples:
        ids, prompt_length = encode_completion(
            tokenizer, example.prompt, example.completion, use_chat_template=False, max_length=64
        )
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], dim=-1)
        first = 1 if prompt_too else prompt_length
        total -= sum(float(log_probs[t - 1, ids[t]]) for t in range(first, len(ids)))
        count += len(ids) - first
    return total / count


def test_it_trains_reports_the_loss_and_saves_a_causal_lm(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    result, reporter = run(tiny_model_path, tmp_path, config())

    assert result.status == "succeeded" and result.steps == 3
    losses = [r.metrics["loss"] for r in reporter.reports if "loss" in r.metrics]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert set(result.eval_metrics) == {"eval/loss"}
    assert reporter.reports[-1].metrics == result.eval_metrics
    assert result.final_dir is not None
    trained = AutoModelForCausalLM.from_pretrained(result.final_dir)
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], base[name])
    assert (result.final_dir / "tokenizer.json").exists()


@pytest.mark.parametrize("completion_only_loss", [True, False])
def test_its_first_loss_is_the_token_mean_over_trained_tokens_across_accumulation(
    tiny_model_path: Path, tmp_path: Path, completion_only_loss: bool
) -> None:
    # Three micro-batches of one example each, accumulated into one step.
    cfg = config(
        max_steps=1,
        batch_size=1,
        gradient_accumulation_steps=3,
        completion_only_loss=completion_only_loss,
    )

    _, reporter = run(tiny_model_path, tmp_path, cfg)

    expected = hand_token_mean_nll(tiny_model_path, EXAMPLES, prompt_too=not completion_only_loss)
    assert reporter.reports[0].metrics["loss"] == pytest.approx(expected, abs=1e-4)


def test_a_stopped_run_resumes_from_its_checkpoint(tiny_model_path: Path, tmp_path: Path) -> None:
    cfg = config(max_steps=4, batch_size=1)

    stopped, _ = run(tiny_model_path, tmp_path, cfg, reporter=ListReporter(stop_at_step=2))

    assert stopped.status == "cancelled" and stopped.steps == 2
    assert stopped.checkpoint_dir == tmp_path / "checkpoints" / "checkpoint-2"
    assert not (tmp_path / "final").exists()
    resumed, second = run(tiny_model_path, tmp_path, cfg, resume_from=stopped.checkpoint_dir)
    assert resumed.status == "succeeded" and resumed.steps == 4
    assert [r.step for r in second.reports if "loss" in r.metrics] == [3, 4]


def test_resuming_from_a_missing_checkpoint_is_a_training_error(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "checkpoints" / "checkpoint-9"

    with pytest.raises(TrainingError, match="does not exist"):
        run(tiny_model_path, tmp_path, config(), resume_from=missing)


def test_a_lora_run_saves_a_merged_model(tiny_model_path: Path, tmp_path: Path) -> None:
    result, _ = run(tiny_model_path, tmp_path, config(use_lora=True, lora_r=4))

    assert result.status == "succeeded" and result.final_dir is not None
    files = {p.name for p in result.final_dir.iterdir()}
    assert "model.safetensors" in files and not any(f.startswith("adapter") for f in files)
    trained = AutoModelForCausalLM.from_pretrained(result.final_dir)
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], base[name])


def test_it_refuses_an_empty_training_split(tiny_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no examples"):
        run(tiny_model_path, tmp_path, config(), SFTData(train=[], eval=EXAMPLES))


def test_run_sft_refuses_preference_data(tiny_model_path: Path, tmp_path: Path) -> None:
    spec = RunSpec(
        kind="sft", config=config(), model_path=str(tiny_model_path), output_dir=tmp_path
    )

    with pytest.raises(TrainingError, match="SFTData"):
        run_sft(spec, PreferenceData(train=[]), ListReporter())
