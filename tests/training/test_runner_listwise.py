"""Listwise (Plackett-Luce) reward and DPO runs on whole rankings, tiny model, CPU."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from training.core.configs import DPOConfig, RewardConfig
from training.core.data import PreferenceData, RankingRecord, ranking_groups
from training.core.hf import load_reward_model, load_tokenizer
from training.core.losses import plackett_luce_loss, ranking_tensors
from training.core.reporting import ListReporter
from training.core.runners import RunResult, RunSpec, TrainingError, run_training
from training.core.scoring import RewardScorer

CAPITAL = "What is the capital of France?"
NICE = [{"role": "user", "content": "Say something nice."}]


def record(prompt_key: str, prompt: object, *ties: tuple[str, ...]) -> RankingRecord:
    return RankingRecord(
        prompt_key=prompt_key,
        prompt=prompt,  # type: ignore[arg-type]
        order=tuple(tuple((text, text) for text in tie) for tie in ties),
    )


# Two annotators rank the same three answers differently; a second prompt has a tie.
RECORDS = [
    record("capital", CAPITAL, ("Paris.",), ("The capital is Paris.",), ("Berlin.",)),
    record("capital", CAPITAL, ("The capital is Paris.",), ("Paris.",), ("Berlin.",)),
    record("nice", NICE, ("Thank you!", "You're welcome."), ("No.",)),
]
DATA = PreferenceData(train=ranking_groups(RECORDS), eval=ranking_groups(RECORDS[2:]))


def run(
    kind: str,
    model_path: Path,
    output_dir: Path,
    cfg: RewardConfig | DPOConfig,
    data: PreferenceData = DATA,
) -> tuple[RunResult, ListReporter]:
    reporter = ListReporter()
    spec = RunSpec(
        kind=kind,  # type: ignore[arg-type]
        config=cfg,
        model_path=str(model_path),
        output_dir=output_dir,
        device="cpu",
    )
    return run_training(spec, data, reporter), reporter


def losses(reporter: ListReporter) -> list[float]:
    return [r.metrics["loss"] for r in reporter.reports if "loss" in r.metrics]


def test_it_groups_rankings_with_each_completion_once() -> None:
    capital, nice = DATA.train

    assert capital.completions == ("Paris.", "The capital is Paris.", "Berlin.")
    assert capital.rankings == (((0,), (1,), (2,)), ((1,), (0,), (2,)))
    assert nice.rankings == (((0, 1), (2,)),)
    assert set(nice.pairs) == {(0, 2), (1, 2)}


def test_its_first_reward_loss_is_plackett_luce_on_the_initial_scores(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    init = tmp_path / "init"
    tokenizer = load_tokenizer(str(tiny_model_path))
    load_reward_model(str(tiny_model_path), tokenizer, seed=0).save_pretrained(init)
    tokenizer.save_pretrained(init)
    scorer = RewardScorer(str(init), device="cpu", max_length=64)
    scores = [scorer.score([(g.prompt, c) for c in g.completions]) for g in DATA.train]
    flat = torch.tensor([s for group in scores for s in group])
    index, ranks, mask = ranking_tensors([[[0], [1], [2]], [[1], [0], [2]], [[3, 4], [5]]])
    expected, _ = plackett_luce_loss(flat[index], ranks, mask)
    cfg = RewardConfig(
        learning_rate=1e-3,
        batch_size=2,
        max_steps=1,
        logging_steps=1,
        max_length=64,
        loss="plackett_luce",
    )

    result, reporter = run("reward", tiny_model_path, tmp_path / "run", cfg)

    assert result.status == "succeeded"
    assert losses(reporter)[0] == pytest.approx(float(expected), abs=1e-5)
    assert "rewards/top1_accuracies" in reporter.reports[0].metrics
    assert "eval/rewards/top1_accuracies" in result.eval_metrics


def test_it_trains_a_reward_model_on_rankings(tiny_model_path: Path, tmp_path: Path) -> None:
    cfg = RewardConfig(
        learning_rate=1e-3,
        batch_size=2,
        max_steps=6,
        logging_steps=1,
        max_length=64,
        loss="plackett_luce",
    )

    result, reporter = run("reward", tiny_model_path, tmp_path, cfg)

    assert result.status == "succeeded" and result.steps == 6
    assert losses(reporter)[-1] < losses(reporter)[0]


def test_its_first_dpo_loss_is_the_log_of_the_ways_to_pick_each_place(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    # At step 0 the policy is the reference: every implicit reward is 0, so each place of
    # a ranking costs log(how many completions it was picked from).
    cfg = DPOConfig(
        learning_rate=1e-3,
        beta=0.5,
        batch_size=2,
        max_steps=3,
        logging_steps=1,
        max_length=64,
        loss="plackett_luce",
    )

    result, reporter = run("dpo", tiny_model_path, tmp_path, cfg)

    full = math.log(3) + math.log(2)  # a > b > c
    tied = math.log(2) + math.log(2)  # a, b tied above c: each picked against itself and c
    assert losses(reporter)[0] == pytest.approx((full + full + tied) / 3, abs=1e-5)
    assert losses(reporter)[-1] < losses(reporter)[0]
    assert result.eval_metrics["eval/rewards/margins"] > 0


@pytest.mark.parametrize("kind", ["reward", "dpo"])
def test_on_pairs_it_equals_the_pairwise_loss(
    kind: str, tiny_model_path: Path, tmp_path: Path
) -> None:
    pairs = [
        record("capital", CAPITAL, ("Paris.",), ("Berlin.",)),
        record("nice", NICE, ("No.",), ("Thank you!",)),
    ]
    data = PreferenceData(train=ranking_groups(pairs))
    common: dict[str, Any] = {
        "learning_rate": 1e-3,
        "batch_size": 2,
        "max_steps": 2,
        "logging_steps": 1,
        "max_length": 64,
        "grouped_reduction": "pairs",
    }
    config_class = RewardConfig if kind == "reward" else DPOConfig

    _, listwise = run(
        kind, tiny_model_path, tmp_path / "pl", config_class(loss="plackett_luce", **common), data
    )
    _, pairwise = run(kind, tiny_model_path, tmp_path / "bt", config_class(**common), data)

    assert losses(listwise) == pytest.approx(losses(pairwise), abs=1e-5)


def test_it_refuses_pair_data_for_the_listwise_loss(tiny_model_path: Path, tmp_path: Path) -> None:
    from training.core.data import PreferenceGroup

    data = PreferenceData(
        train=[PreferenceGroup(prompt="Hi", completions=("a", "b"), pairs=((0, 1),))]
    )
    cfg = RewardConfig(max_steps=1, max_length=64, loss="plackett_luce")

    with pytest.raises(TrainingError, match="whole rankings"):
        run("reward", tiny_model_path, tmp_path, cfg, data)


def test_it_regresses_a_reward_model_on_the_rankings_scores(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    scored = [
        RankingRecord(
            prompt_key="capital",
            prompt=CAPITAL,
            order=((("a", "Paris."),), (("b", "Berlin."),)),
            scores=(("a", 7.0), ("b", 2.0)),
        ),
        RankingRecord(
            prompt_key="nice",
            prompt=NICE,
            order=((("c", "Thank you!"),), (("d", "No."),)),
            scores=(("c", 6.0),),  # "No." was not scored
        ),
    ]
    data = PreferenceData(train=ranking_groups(scored))
    assert data.train[1].ranking_scores == ((6.0, None),)
    cfg = RewardConfig(
        learning_rate=1e-3,
        batch_size=2,
        max_steps=8,
        logging_steps=1,
        max_length=64,
        loss="score_regression",
    )
    init = tmp_path / "init"
    tokenizer = load_tokenizer(str(tiny_model_path))
    load_reward_model(str(tiny_model_path), tokenizer, seed=0).save_pretrained(init)
    tokenizer.save_pretrained(init)
    before = RewardScorer(str(init), device="cpu", max_length=64).score(
        [(CAPITAL, "Paris."), (CAPITAL, "Berlin."), (NICE, "Thank you!")]
    )
    targets = [3.0, -2.0, 2.0]  # score - 4

    result, reporter = run("reward", tiny_model_path, tmp_path / "run", cfg, data)

    first = reporter.reports[0].metrics
    expected = sum((b - t) ** 2 for b, t in zip(before, targets, strict=True)) / 3
    assert first["loss"] == pytest.approx(expected, abs=1e-4)
    assert losses(reporter)[-1] < losses(reporter)[0]
    assert result.final_dir is not None
    after = RewardScorer(str(result.final_dir), device="cpu", max_length=64).score(
        [(CAPITAL, "Paris."), (CAPITAL, "Berlin."), (NICE, "Thank you!")]
    )
    assert sum(abs(a - t) for a, t in zip(after, targets, strict=True)) < sum(
        abs(b - t) for b, t in zip(before, targets, strict=True)
    )
