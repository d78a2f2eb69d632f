"""Reward-model runs (``training.core.preference``, kind "reward") on the tiny model, on CPU."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from training.core.configs import RewardConfig
from training.core.data import PreferenceData, PreferenceGroup
from training.core.hf import load_reward_model, load_tokenizer
from training.core.losses import bradley_terry_loss
from training.core.reporting import ListReporter
from training.core.runners import RunResult, RunSpec, TrainingError, run_training
from training.core.scoring import RewardScorer

HOUSE_METRICS = {
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
}

# Three prompts; annotators disagree on prompt 1 (both (0, 1) and (1, 0)) and one pair of
# prompt 2 was given twice.
GROUPS = (
    PreferenceGroup(
        prompt="What is the capital of France?",
        completions=("Paris.", "The capital of France is Paris.", "Berlin."),
        pairs=((1, 0), (0, 2), (1, 2)),
    ),
    PreferenceGroup(
        prompt="Say something nice.",
        completions=("Thank you!", "You're welcome."),
        pairs=((0, 1), (1, 0)),
    ),
    PreferenceGroup(
        prompt=[{"role": "user", "content": "Can you explain photosynthesis?"}],
        completions=("Plants use light.", "No.", "Maybe."),
        pairs=((0, 1), (0, 1), (2, 1)),
        margins=(2.0, 1.0, 0.5),
    ),
)


def config(**changes: object) -> RewardConfig:
    base = RewardConfig(
        learning_rate=1e-3, batch_size=3, max_steps=3, logging_steps=1, max_length=64
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(
    model_path: Path,
    output_dir: Path,
    cfg: RewardConfig,
    data: PreferenceData | None = None,
    reporter: ListReporter | None = None,
    resume_from: Path | None = None,
) -> tuple[RunResult, ListReporter]:
    reporter = reporter or ListReporter()
    spec = RunSpec(
        kind="reward",
        config=cfg,
        model_path=str(model_path),
        output_dir=output_dir,
        resume_from=resume_from,
        device="cpu",
    )
    result = run_training(spec, data or PreferenceData(train=GROUPS, eval=GROUPS[:2]), reporter)
    return result, reporter


@pytest.fixture(scope="module")
def initial_scores(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[list[float]]:
    """Each group's completions scored by the untrained reward model of seed 0."""
    path = tmp_path_factory.mktemp("reward-init")
    tokenizer = load_tokenizer(str(tiny_model_path))
    load_reward_model(str(tiny_model_path), tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    scorer = RewardScorer(str(path), device="cpu", max_length=64)
    return [scorer.score([(g.prompt, c) for c in g.completions]) for g in GROUPS]


def expanded_pairs_loss(
    scores: list[list[float]], groups: tuple[PreferenceGroup, ...], margins: bool = False
) -> float:
    chosen, rejected, margin = [], [], []
    for group, group_scores in zip(groups, scores, strict=True):
        for p, (w, lo) in enumerate(group.pairs):
            chosen.append(group_scores[w])
            rejected.append(group_scores[lo])
            margin.append(group.margins[p] if margins and group.margins else 0.0)
    loss, _ = bradley_terry_loss(torch.tensor(chosen), torch.tensor(rejected), torch.tensor(margin))
    return float(loss)


def test_it_trains_reports_house_metrics_and_saves_a_model_scoring_py_reads(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    result, reporter = run(tiny_model_path, tmp_path, config())

    assert result.status == "succeeded" and result.steps == 3
    assert result.final_dir == tmp_path / "final"
    train_reports = [r for r in reporter.reports if "loss" in r.metrics]
    assert [r.step for r in train_reports] == [1, 2, 3]
    assert all(r.total_steps == 3 for r in train_reports)
    assert HOUSE_METRICS <= set(train_reports[0].metrics)
    assert train_reports[-1].metrics["loss"] < train_reports[0].metrics["loss"]
    assert set(result.eval_metrics) == {f"eval/{name}" for name in HOUSE_METRICS}
    assert reporter.reports[-1].metrics == result.eval_metrics

    trained = AutoModelForSequenceClassification.from_pretrained(result.final_dir).eval()
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], base[name])
    scorer = RewardScorer(str(result.final_dir), device="cpu", max_length=64)
    items = [(g.prompt, c) for g in GROUPS for c in g.completions]
    with torch.no_grad():
        forward = [
            float(trained(input_ids=torch.tensor([scorer.encode(p, c)])).logits[0, 0])
            for p, c in items
        ]
    assert scorer.score(items) == pytest.approx(forward, abs=1e-5)


def test_its_first_loss_is_bradley_terry_on_the_expanded_pairs_grouped_or_not(
    tiny_model_path: Path, tmp_path: Path, initial_scores: list[list[float]]
) -> None:
    expected = expanded_pairs_loss(initial_scores, GROUPS)
    one_step = {"max_steps": 1, "batch_size": 8}

    grouped, grouped_reports = run(
        tiny_model_path, tmp_path / "grouped", config(grouped_reduction="pairs", **one_step)
    )
    split, split_reports = run(
        tiny_model_path, tmp_path / "split", config(grouped=False, **one_step)
    )

    assert grouped_reports.reports[0].metrics["loss"] == pytest.approx(expected, abs=1e-5)
    assert split_reports.reports[0].metrics["loss"] == pytest.approx(expected, abs=1e-5)


def test_its_first_loss_weighs_prompts_equally_and_uses_margins_when_asked(
    tiny_model_path: Path, tmp_path: Path, initial_scores: list[list[float]]
) -> None:
    per_prompt = [
        expanded_pairs_loss([scores], (group,), margins=True)
        for scores, group in zip(initial_scores, GROUPS, strict=True)
    ]

    _, reporter = run(tiny_model_path, tmp_path, config(max_steps=1, batch_size=8, use_margin=True))

    assert reporter.reports[0].metrics["loss"] == pytest.approx(sum(per_prompt) / 3, abs=1e-5)
    assert per_prompt[2] != pytest.approx(
        expanded_pairs_loss([initial_scores[2]], (GROUPS[2],)), abs=1e-3
    )


def test_it_learns_a_toy_preference(tiny_model_path: Path, tmp_path: Path) -> None:
    # Chosen completions always mention bananas, rejected ones never do.
    fruits = ("apple", "pear", "plum", "grape", "cherry", "lemon")
    groups = [
        PreferenceGroup(
            prompt=f"Question {i}: what do you like?",
            completions=(f"I like banana and {fruit}.", f"I like {fruit}.", f"I like {other}."),
            pairs=((0, 1), (0, 2)),
        )
        for i, (fruit, other) in enumerate(zip(fruits, fruits[1:] + fruits[:1], strict=True))
    ]
    held_out = [
        PreferenceGroup(
            prompt="What do you eat?",
            completions=("I eat banana and kiwi.", "I eat kiwi.", "I eat a melon."),
            pairs=((0, 1), (0, 2)),
        ),
        PreferenceGroup(
            prompt="Tell me a fruit.",
            completions=("Mango.", "Banana and mango."),
            pairs=((1, 0),),
        ),
    ]
    data = PreferenceData(train=groups, eval=held_out)

    untrained, _ = run(
        tiny_model_path, tmp_path / "before", config(max_steps=1, learning_rate=1e-9), data
    )
    trained, _ = run(tiny_model_path, tmp_path / "after", config(max_steps=30, batch_size=2), data)

    assert untrained.eval_metrics["eval/rewards/accuracies"] < 1.0
    assert trained.eval_metrics["eval/rewards/accuracies"] == 1.0
    assert trained.eval_metrics["eval/loss"] < untrained.eval_metrics["eval/loss"]


def test_a_stopped_run_resumes_from_its_checkpoint(tiny_model_path: Path, tmp_path: Path) -> None:
    cfg = config(max_steps=4, batch_size=1)

    stopped, first = run(tiny_model_path, tmp_path, cfg, reporter=ListReporter(stop_at_step=2))

    assert stopped.status == "cancelled" and stopped.steps == 2
    assert stopped.final_dir is None and not (tmp_path / "final").exists()
    assert stopped.checkpoint_dir == tmp_path / "checkpoints" / "checkpoint-2"
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth"} <= {
        p.name for p in stopped.checkpoint_dir.iterdir()
    }

    resumed, second = run(tiny_model_path, tmp_path, cfg, resume_from=stopped.checkpoint_dir)

    assert resumed.status == "succeeded" and resumed.steps == 4
    assert [r.step for r in second.reports if "loss" in r.metrics] == [3, 4]
    assert (tmp_path / "final" / "model.safetensors").exists()


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    cfg = config(max_steps=4, batch_size=1, save_steps=2)
    whole, whole_reports = run(tiny_model_path, tmp_path / "whole", cfg)
    stopped, _ = run(
        tiny_model_path, tmp_path / "parts", cfg, reporter=ListReporter(stop_at_step=2)
    )

    resumed, resumed_reports = run(
        tiny_model_path, tmp_path / "parts", cfg, resume_from=stopped.checkpoint_dir
    )

    assert resumed.eval_metrics == pytest.approx(whole.eval_metrics, abs=1e-5)
    assert resumed_reports.reports[-2].metrics["loss"] == pytest.approx(
        whole_reports.reports[-2].metrics["loss"], abs=1e-5
    )


def test_a_lora_run_saves_a_merged_model(tiny_model_path: Path, tmp_path: Path) -> None:
    result, reporter = run(tiny_model_path, tmp_path, config(use_lora=True, lora_r=4))

    assert result.status == "succeeded"
    assert result.final_dir is not None
    files = {p.name for p in result.final_dir.iterdir()}
    assert "model.safetensors" in files and not any(f.startswith("adapter") for f in files)
    trained = AutoModelForSequenceClassification.from_pretrained(result.final_dir).eval()
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], base[name])
    initial = load_reward_model(str(tiny_model_path), load_tokenizer(str(tiny_model_path)), seed=0)
    assert not torch.equal(trained.score.weight, initial.score.weight)  # the trained head
    scorer = RewardScorer(str(result.final_dir), device="cpu", max_length=64)
    prompt, completion = GROUPS[0].prompt, GROUPS[0].completions[1]
    with torch.no_grad():
        forward = trained(input_ids=torch.tensor([scorer.encode(prompt, completion)])).logits
    assert scorer.score([(prompt, completion)])[0] == pytest.approx(float(forward[0, 0]), abs=1e-5)
    assert math.isfinite(result.eval_metrics["eval/loss"])
    assert reporter.reports[0].metrics["loss"] > reporter.reports[-2].metrics["loss"]


def test_it_runs_whole_epochs_with_gradient_accumulation(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    cfg = config(max_steps=0, num_epochs=2, batch_size=1, gradient_accumulation_steps=2)

    result, reporter = run(tiny_model_path, tmp_path, cfg)

    # 3 groups a micro-batch each, 2 micro-batches a step: 2 steps an epoch.
    assert result.status == "succeeded" and result.steps == 4
    assert [(r.step, r.total_steps) for r in reporter.reports if "loss" in r.metrics] == [
        (1, 4),
        (2, 4),
        (3, 4),
        (4, 4),
    ]


def test_it_is_deterministic_for_a_seed(tiny_model_path: Path, tmp_path: Path) -> None:
    a, _ = run(tiny_model_path, tmp_path / "a", config(max_steps=2, batch_size=1))
    b, _ = run(tiny_model_path, tmp_path / "b", config(max_steps=2, batch_size=1))

    assert a.eval_metrics == b.eval_metrics


def test_it_refuses_data_without_pairs(tiny_model_path: Path, tmp_path: Path) -> None:
    no_pairs = PreferenceGroup(prompt="Hi", completions=("a", "b"), pairs=())

    with pytest.raises(TrainingError, match="no preference pairs"):
        run(tiny_model_path, tmp_path, config(), PreferenceData(train=[no_pairs], eval=GROUPS))
    with pytest.raises(TrainingError, match="no preference pairs"):
        run(tiny_model_path, tmp_path, config(), PreferenceData(train=[]))


def test_it_refuses_a_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="does not exist"):
        run(tmp_path / "no-model", tmp_path / "out", config())
