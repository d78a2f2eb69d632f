"""DPO runs (``training.core.preference``, kind "dpo") on the tiny model, on CPU."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from generation.backends.base import PromptInput
from training.core.configs import DPOConfig
from training.core.data import PreferenceData, PreferenceGroup, encode_completion
from training.core.hf import load_tokenizer
from training.core.reporting import ListReporter
from training.core.runners import RunResult, RunSpec, TrainingError, run_training

HOUSE_METRICS = {
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
}

GROUPS = (
    PreferenceGroup(
        prompt="What is the capital of France?",
        completions=("Paris.", "The capital of France is Paris.", "Berlin."),
        pairs=((1, 0), (0, 2), (1, 2)),
    ),
    PreferenceGroup(
        prompt="Say something nice.",
        completions=("Thank you!", "You're welcome."),
        pairs=((0, 1), (1, 0)),  # annotators disagree
    ),
    PreferenceGroup(
        prompt=[{"role": "user", "content": "Can you explain photosynthesis?"}],
        completions=("Plants use light to turn water into sugar.", "No."),
        pairs=((0, 1), (0, 1)),
    ),
)


def config(**changes: object) -> DPOConfig:
    base = DPOConfig(
        learning_rate=1e-3, beta=0.5, batch_size=3, max_steps=3, logging_steps=1, max_length=64
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(
    model_path: Path,
    output_dir: Path,
    cfg: DPOConfig,
    data: PreferenceData | None = None,
    reporter: ListReporter | None = None,
    resume_from: Path | None = None,
) -> tuple[RunResult, ListReporter]:
    reporter = reporter or ListReporter()
    spec = RunSpec(
        kind="dpo",
        config=cfg,
        model_path=str(model_path),
        output_dir=output_dir,
        resume_from=resume_from,
        device="cpu",
    )
    result = run_training(spec, data or PreferenceData(train=GROUPS, eval=GROUPS[:2]), reporter)
    return result, reporter


def training_losses(reporter: ListReporter) -> list[float]:
    return [r.metrics["loss"] for r in reporter.reports if "loss" in r.metrics]


def hand_logps(model_path: Path, prompt: PromptInput, completion: str) -> float:
    """Sum of log p(token | prefix) over the completion's tokens and EOS, one token at a time."""
    tokenizer = load_tokenizer(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    ids, prompt_length = encode_completion(
        tokenizer, prompt, completion, use_chat_template=False, max_length=64
    )
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], dim=-1)
    return sum(float(log_probs[t - 1, ids[t]]) for t in range(prompt_length, len(ids)))


def test_it_trains_reports_house_metrics_and_saves_a_causal_lm(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    result, reporter = run(tiny_model_path, tmp_path, config())

    assert result.status == "succeeded" and result.steps == 3
    train_reports = [r for r in reporter.reports if "loss" in r.metrics]
    assert [r.step for r in train_reports] == [1, 2, 3]
    assert HOUSE_METRICS <= set(train_reports[0].metrics)
    # The policy starts as the reference: every implicit reward is 0, the loss log(2).
    assert train_reports[0].metrics["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert train_reports[0].metrics["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert train_reports[-1].metrics["loss"] < math.log(2)
    assert set(result.eval_metrics) == {f"eval/{name}" for name in HOUSE_METRICS}
    assert result.eval_metrics["eval/rewards/margins"] > 0

    assert result.final_dir is not None
    trained = AutoModelForCausalLM.from_pretrained(result.final_dir)
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], base[name])
    assert (result.final_dir / "tokenizer.json").exists()


def test_its_log_probs_sum_the_completion_tokens(tiny_model_path: Path, tmp_path: Path) -> None:
    group = GROUPS[0]

    _, reporter = run(
        tiny_model_path,
        tmp_path,
        config(max_steps=1, grouped_reduction="pairs"),
        PreferenceData(train=[group]),
    )

    logps = [hand_logps(tiny_model_path, group.prompt, c) for c in group.completions]
    chosen = sum(logps[w] for w, _ in group.pairs) / len(group.pairs)
    rejected = sum(logps[lo] for _, lo in group.pairs) / len(group.pairs)
    metrics = reporter.reports[0].metrics
    assert metrics["logps/chosen"] == pytest.approx(chosen, abs=1e-4)
    assert metrics["logps/rejected"] == pytest.approx(rejected, abs=1e-4)


@pytest.mark.parametrize("use_lora", [False, True])
def test_precomputed_reference_log_probs_give_the_live_references_losses(
    tiny_model_path: Path, tmp_path: Path, use_lora: bool
) -> None:
    cfg = config(max_steps=3, batch_size=1, use_lora=use_lora)

    live, live_reports = run(tiny_model_path, tmp_path / "live", cfg)
    pre, pre_reports = run(
        tiny_model_path, tmp_path / "pre", dataclasses.replace(cfg, precompute_ref_log_probs=True)
    )

    # After the first step the policy has moved: equal losses mean the same reference.
    assert training_losses(pre_reports) == pytest.approx(training_losses(live_reports), abs=1e-5)
    assert training_losses(live_reports)[0] == pytest.approx(math.log(2), abs=1e-6)
    assert pre.eval_metrics == pytest.approx(live.eval_metrics, abs=1e-5)
    assert "computing the reference log-probs" in pre_reports.lines


def test_grouped_and_split_pairs_give_the_same_first_metrics(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    # All pairs in one micro-batch: grouped forwards 7 completions, split 14, same pairs.
    cfg = config(max_steps=1, batch_size=8, grouped_reduction="pairs")

    _, grouped = run(tiny_model_path, tmp_path / "grouped", cfg)
    _, split = run(tiny_model_path, tmp_path / "split", dataclasses.replace(cfg, grouped=False))

    grouped_metrics, split_metrics = grouped.reports[0].metrics, split.reports[0].metrics
    for name in ("loss", "logps/chosen", "logps/rejected", "rewards/margins"):
        assert grouped_metrics[name] == pytest.approx(split_metrics[name], abs=1e-4), name
    assert grouped_metrics["logps/chosen"] != pytest.approx(grouped_metrics["logps/rejected"])


def test_a_stopped_run_resumes_from_its_checkpoint(tiny_model_path: Path, tmp_path: Path) -> None:
    cfg = config(max_steps=4, batch_size=1)

    stopped, _ = run(tiny_model_path, tmp_path, cfg, reporter=ListReporter(stop_at_step=2))

    assert stopped.status == "cancelled" and stopped.steps == 2
    assert stopped.checkpoint_dir == tmp_path / "checkpoints" / "checkpoint-2"
    resumed, second = run(tiny_model_path, tmp_path, cfg, resume_from=stopped.checkpoint_dir)
    assert resumed.status == "succeeded" and resumed.steps == 4
    assert [r.step for r in second.reports if "loss" in r.metrics] == [3, 4]


def test_a_lora_run_saves_a_merged_model(tiny_model_path: Path, tmp_path: Path) -> None:
    result, reporter = run(tiny_model_path, tmp_path, config(use_lora=True, lora_r=4))

    assert result.status == "succeeded" and result.final_dir is not None
    files = {p.name for p in result.final_dir.iterdir()}
    assert "model.safetensors" in files and not any(f.startswith("adapter") for f in files)
    trained = AutoModelForCausalLM.from_pretrained(result.final_dir)
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], base[name])
    assert training_losses(reporter)[-1] < math.log(2)


def test_it_refuses_data_without_pairs(tiny_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no preference pairs"):
        run(tiny_model_path, tmp_path, config(), PreferenceData(train=[], eval=GROUPS))


def test_completion_logps_skip_the_prompts_logits_and_change_nothing(tiny_model_path) -> None:  # type: ignore[no-untyped-def]
    from training.core.losses import sequence_logps
    from training.core.preference import _collate, completion_logps, encode_groups

    tokenizer = load_tokenizer(str(tiny_model_path))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    long_prompt = PreferenceGroup(
        prompt="Tell me a long story about a fox. " * 6,
        completions=("Once upon a time.", "Once upon a banana."),
        pairs=((0, 1),),
    )
    encoded = encode_groups(
        [long_prompt, *GROUPS], tokenizer, use_chat_template=False, max_length=256
    )
    batch = _collate(encoded, tokenizer.pad_token_id)
    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    seen: list[tuple[int, ...]] = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[:-1]))
    with torch.no_grad():
        fast = completion_logps(model, ids, mask, completion)
        hook.remove()
        logits = model(input_ids=ids, attention_mask=mask).logits
        full, _ = sequence_logps(logits[:, :-1], ids[:, 1:], completion[:, 1:])

    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    # The model's own forward runs the head on its last position, a check on that position
    # follows, then the head sees the scored completion tokens only (training.core.logps).
    rows = ids.shape[0]
    assert seen[:2] == [(rows, 1), (rows,)]
    assert sum(shape[0] for shape in seen[2:]) == int(completion[:, 1:].sum())
