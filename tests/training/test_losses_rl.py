"""Critic-free advantages and the reward PPO and GRPO optimise, from ``training.core.losses``.

Expected values are worked out by hand, not by re-running the formula in torch.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from training.core.losses import group_advantages, reward_from_score


def t(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_it_scales_each_group_by_its_own_spread_for_grpo() -> None:
    # Group 1: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5.
    # Group 2: all equal, no spread: no signal.
    rewards = t([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])
    sd = math.sqrt(3.5)

    got = group_advantages(rewards, 4, "grpo")

    expected = [-2 / sd, -1 / sd, 0.0, 3 / sd, 0.0, 0.0, 0.0, 0.0]
    assert_close(got, t(expected), rtol=1e-5, atol=1e-5)


def test_it_subtracts_the_mean_of_the_other_samples_for_rloo() -> None:
    # 1 - (2 + 3 + 6) / 3, 2 - (1 + 3 + 6) / 3, 3 - (1 + 2 + 6) / 3, 6 - (1 + 2 + 3) / 3
    rewards = t([1.0, 2.0, 3.0, 6.0, 0.5, -0.5])

    got = torch.cat(
        [group_advantages(rewards[:4], 4, "rloo"), group_advantages(rewards[4:], 2, "rloo")]
    )

    assert_close(got, t([1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0, 1.0, -1.0]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_it_ranks_completions_within_their_group_only(estimator: str) -> None:
    # The second prompt's rewards are all far higher: that must not make its worst sample
    # look good, nor the first prompt's best look bad.
    rewards = t([0.0, 1.0, 100.0, 101.0])

    got = group_advantages(rewards, 2, estimator)  # type: ignore[arg-type]

    assert got[0] < 0 < got[1] and got[2] < 0 < got[3]
    assert_close(got.view(2, 2).sum(dim=-1), t([0.0, 0.0]), rtol=0, atol=1e-6)
    assert not got.requires_grad


def test_it_refuses_groups_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="two"):
        group_advantages(t([1.0, 2.0]), 1, "grpo")
    with pytest.raises(ValueError, match="groups of 2"):
        group_advantages(t([1.0, 2.0, 3.0]), 2, "rloo")
    with pytest.raises(ValueError, match="estimator"):
        group_advantages(t([1.0, 2.0]), 2, "ppo")  # type: ignore[arg-type]


def test_it_normalises_clips_and_charges_length() -> None:
    # (1 - 1) / 2 = 0, (4 - 1) / 2 = 1.5, (-5 - 1) / 2 = -3 -> clipped to -2;
    # minus 0.1 per token: 0.2, 1.0, 0.3.
    got = reward_from_score(
        t([1.0, 4.0, -5.0]),
        torch.tensor([2, 10, 3]),
        mean=1.0,
        std=2.0,
        clip=2.0,
        length_penalty=0.1,
    )

    assert_close(got, t([-0.2, 0.5, -2.3]), rtol=1e-6, atol=1e-6)


def test_it_leaves_raw_scores_alone_by_default() -> None:
    score = t([12.0, -7.5])

    assert_close(reward_from_score(score, torch.tensor([5, 1])), score)
    with pytest.raises(ValueError, match="std"):
        reward_from_score(score, torch.tensor([5, 1]), std=0.0)
