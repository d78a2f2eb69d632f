"""Properties of the losses in ``training.core.losses``.

Expected values are worked out by hand with ``math``, not by re-running the formula in torch.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import pytest
import torch
from torch.testing import assert_close

from training.core.losses import (
    AdaptiveKLController,
    FixedKLController,
    bradley_terry_loss,
    dpo_loss,
    entropy_from_logits,
    gae,
    grouped_bradley_terry_loss,
    grouped_dpo_loss,
    masked_mean,
    masked_whiten,
    pairwise_bradley_terry_loss,
    pairwise_dpo_loss,
    per_token_kl,
    plackett_luce_dpo_loss,
    plackett_luce_loss,
    ppo_policy_loss,
    ppo_value_loss,
    ranked_pairs,
    ranking_tensors,
    score_regression_loss,
    sequence_logps,
    shaped_rewards,
)


def neg_log_sigmoid(z: float) -> float:
    """-log(sigmoid(z)) = log(1 + exp(-z))."""
    return math.log1p(math.exp(-z))


def t(values: object, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=requires_grad)


def assert_detached(metrics: dict[str, torch.Tensor]) -> None:
    for name, value in metrics.items():
        assert not value.requires_grad, name
        assert torch.isfinite(value).all(), name


def close(actual: torch.Tensor, expected: float) -> None:
    assert_close(actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------
# sequence_logps
# --------------------------------------------------------------------------------------


def test_sequence_logps_matches_hand_computed_log_softmax() -> None:
    logits = t([[[1.0, 2.0, 0.0], [0.5, 0.5, 3.0]], [[9.0, 9.0, 9.0], [1.0, 1.0, 1.0]]])
    labels = torch.tensor([[1, 2], [-100, -100]])
    mask = torch.tensor([[1, 1], [0, 0]])

    total, counts = sequence_logps(logits, labels, mask)

    first = 2.0 - math.log(math.exp(1.0) + math.exp(2.0) + math.exp(0.0))
    second = 3.0 - math.log(2 * math.exp(0.5) + math.exp(3.0))
    close(total[0], first + second)
    close(total[1], 0.0)  # fully masked row, labels -100 included
    assert counts.tolist() == [2, 0]


def test_sequence_logps_ignores_masked_tokens_and_passes_gradients() -> None:
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.randint(0, 5, (2, 4))
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]])

    total, _ = sequence_logps(logits, labels, mask)
    total.sum().backward()

    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, :3].abs().sum() > 0
    assert logits.grad[0, 3].abs().sum() == 0
    assert logits.grad[1].abs().sum() == 0


# --------------------------------------------------------------------------------------
# Bradley-Terry
# --------------------------------------------------------------------------------------


def test_bradley_terry_matches_hand_computed_value() -> None:
    chosen, rejected = t([2.0, 0.5], True), t([1.0, 1.5], True)

    loss, metrics = bradley_terry_loss(chosen, rejected)

    close(loss, (neg_log_sigmoid(1.0) + neg_log_sigmoid(-1.0)) / 2)
    close(metrics["rewards/chosen"], 1.25)
    close(metrics["rewards/rejected"], 1.25)
    close(metrics["rewards/margins"], 0.0)
    close(metrics["rewards/accuracies"], 0.5)
    close(metrics["loss"], loss.item())


def test_bradley_terry_subtracts_the_margin() -> None:
    loss, metrics = bradley_terry_loss(t([2.0, 0.5]), t([1.0, 1.5]), margin=t([0.5, 0.25]))

    close(loss, (neg_log_sigmoid(0.5) + neg_log_sigmoid(-1.25)) / 2)
    close(metrics["rewards/margins"], 0.0)  # the raw reward gap, without the margin


def test_bradley_terry_prefers_chosen_above_rejected() -> None:
    right, _ = bradley_terry_loss(t([2.0]), t([-1.0]))
    wrong, _ = bradley_terry_loss(t([-1.0]), t([2.0]))

    assert right < wrong


def test_bradley_terry_logs_detached_rewards_and_keeps_grad_on_loss() -> None:
    chosen, rejected = t([0.3, -0.2], True), t([0.1, 0.4], True)

    loss, metrics = bradley_terry_loss(chosen, rejected)
    loss.backward()

    assert loss.requires_grad
    assert_detached(metrics)
    assert chosen.grad is not None and (chosen.grad < 0).all()  # raise the chosen rewards
    assert rejected.grad is not None and (rejected.grad > 0).all()


def test_bradley_terry_on_an_empty_batch_is_zero() -> None:
    chosen = torch.zeros(0, requires_grad=True)

    loss, metrics = bradley_terry_loss(chosen, torch.zeros(0))
    loss.backward()

    close(loss, 0.0)
    assert_detached(metrics)


# --------------------------------------------------------------------------------------
# Grouped Bradley-Terry
# --------------------------------------------------------------------------------------

# Prompt 0: completions 0, 1, 2 ranked 0, 1, 1 (1 and 2 tie) -> pairs (0, 1), (0, 2).
# Prompt 1: completions 3, 4 ranked 1, 0 -> pair (4, 3). Prompt 2: completion 5 alone.
GROUP_IDS = torch.tensor([0, 0, 0, 1, 1, 2])
RANKS = torch.tensor([0, 1, 1, 1, 0, 0])
REWARDS = [1.0, 0.0, 2.0, 0.5, -0.5, 9.0]


def test_ranked_pairs_lists_each_non_tied_pair_once_winner_first() -> None:
    winners, losers, pair_group = ranked_pairs(GROUP_IDS, RANKS)

    pairs = sorted(zip(winners.tolist(), losers.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (4, 3)]
    assert sorted(pair_group.tolist()) == [0, 0, 1]


def test_grouped_bradley_terry_matches_hand_computed_value_per_prompt() -> None:
    rewards = t(REWARDS, True)

    loss, metrics = grouped_bradley_terry_loss(rewards, GROUP_IDS, RANKS)

    prompt0 = (neg_log_sigmoid(1.0 - 0.0) + neg_log_sigmoid(1.0 - 2.0)) / 2
    prompt1 = neg_log_sigmoid(-0.5 - 0.5)
    close(loss, (prompt0 + prompt1) / 2)
    # Metrics use the same per-prompt weights: pairs of prompt 0 weigh 1/4, of prompt 1, 1/2.
    close(metrics["rewards/chosen"], (1.0 + 1.0) / 4 + (-0.5) / 2)
    close(metrics["rewards/rejected"], (0.0 + 2.0) / 4 + 0.5 / 2)
    close(metrics["rewards/accuracies"], 1 / 4)
    assert_detached(metrics)


def test_grouped_bradley_terry_matches_hand_computed_value_per_pair() -> None:
    loss, _ = grouped_bradley_terry_loss(t(REWARDS), GROUP_IDS, RANKS, reduction="pairs")

    close(loss, (neg_log_sigmoid(1.0) + neg_log_sigmoid(-1.0) + neg_log_sigmoid(-1.0)) / 3)


def test_grouped_bradley_terry_accepts_index_lists_and_arbitrary_ids() -> None:
    rewards = t(REWARDS)
    by_ids, _ = grouped_bradley_terry_loss(rewards, GROUP_IDS, RANKS)
    by_lists, _ = grouped_bradley_terry_loss(
        rewards, [torch.tensor([0, 1, 2]), [3, 4]], RANKS
    )  # completion 5 is in no list
    by_odd_ids, _ = grouped_bradley_terry_loss(rewards, torch.tensor([7, 7, 7, -3, -3, 40]), RANKS)

    assert_close(by_lists, by_ids)
    assert_close(by_odd_ids, by_ids)


def test_grouped_bradley_terry_rejects_overlapping_groups() -> None:
    with pytest.raises(ValueError, match="group 1"):
        grouped_bradley_terry_loss(t(REWARDS), [[0, 1, 2], [2, 3]], RANKS)


def _random_ranked_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts with 2..5 completions each, ranks drawn from 0..2 so ties are common."""
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(2, 6, (6,), generator=generator).tolist()
    group_ids = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    ranks = torch.randint(0, 3, (len(group_ids),), generator=generator)
    return group_ids, ranks


def _expanded_pairs(group_ids: torch.Tensor, ranks: torch.Tensor) -> list[tuple[int, int]]:
    """Every non-tied (winner, loser) pair, enumerated the slow, obvious way."""
    pairs = []
    for i, j in itertools.combinations(range(len(group_ids)), 2):
        if group_ids[i] != group_ids[j] or ranks[i] == ranks[j]:
            continue
        pairs.append((i, j) if ranks[i] < ranks[j] else (j, i))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_bradley_terry_equals_bradley_terry_on_expanded_pairs(seed: int) -> None:
    group_ids, ranks = _random_ranked_batch(seed)
    rewards = torch.randn(len(group_ids), generator=torch.Generator().manual_seed(seed + 10))
    pairs = _expanded_pairs(group_ids, ranks)
    assert any(ranks[i] == ranks[j] for i, j in itertools.combinations(range(6), 2))  # ties
    winners, losers = (torch.tensor(side) for side in zip(*pairs, strict=True))

    grouped, grouped_metrics = grouped_bradley_terry_loss(
        rewards, group_ids, ranks, reduction="pairs"
    )
    expanded, expanded_metrics = bradley_terry_loss(rewards[winners], rewards[losers])

    assert_close(grouped, expanded)
    assert grouped_metrics.keys() == expanded_metrics.keys()
    for name in expanded_metrics:
        assert_close(grouped_metrics[name], expanded_metrics[name])


def test_grouped_bradley_terry_with_margins_equals_expanded_pairs() -> None:
    group_ids, ranks = _random_ranked_batch(3)
    rewards = torch.randn(len(group_ids))
    winners, losers, _ = ranked_pairs(group_ids, ranks)
    # A margin that grows with the rank gap, computed per pair in ranked_pairs' order.
    margins = 0.5 * (ranks[losers] - ranks[winners]).float()

    grouped, _ = grouped_bradley_terry_loss(rewards, group_ids, ranks, margins, reduction="pairs")
    expanded_pairs = _expanded_pairs(group_ids, ranks)
    w, lo = (torch.tensor(side) for side in zip(*expanded_pairs, strict=True))
    expanded, _ = bradley_terry_loss(
        rewards[w], rewards[lo], margin=0.5 * (ranks[lo] - ranks[w]).float()
    )

    assert_close(grouped, expanded)


def test_grouped_bradley_terry_weighs_prompts_equally() -> None:
    # Prompt 0 has three pairs the model gets badly wrong; prompt 1 one pair it gets right.
    rewards = t([-3.0, 0.0, 0.0, 0.0, 3.0, 0.0])
    group_ids = torch.tensor([0, 0, 0, 0, 1, 1])
    ranks = torch.tensor([0, 1, 1, 1, 0, 1])

    per_prompt, _ = grouped_bradley_terry_loss(rewards, group_ids, ranks)
    per_pair, _ = grouped_bradley_terry_loss(rewards, group_ids, ranks, reduction="pairs")

    close(per_prompt, (neg_log_sigmoid(-3.0) + neg_log_sigmoid(3.0)) / 2)
    close(per_pair, (3 * neg_log_sigmoid(-3.0) + neg_log_sigmoid(3.0)) / 4)


def test_grouped_bradley_terry_scores_each_reward_once_and_passes_gradients() -> None:
    rewards = t(REWARDS, True)

    loss, _ = grouped_bradley_terry_loss(rewards, GROUP_IDS, RANKS)
    loss.backward()

    assert rewards.grad is not None
    assert rewards.grad[0] < 0  # completion 0 wins both its pairs
    assert rewards.grad[5] == 0  # a lone completion has no pair


def test_grouped_bradley_terry_with_only_ties_is_zero() -> None:
    rewards = t([1.0, 2.0, 3.0], True)

    loss, metrics = grouped_bradley_terry_loss(
        rewards, torch.zeros(3, dtype=torch.long), t([1, 1, 1])
    )
    loss.backward()

    close(loss, 0.0)
    assert rewards.grad is not None and (rewards.grad == 0).all()
    assert_detached(metrics)


# --------------------------------------------------------------------------------------
# DPO
# --------------------------------------------------------------------------------------


def test_dpo_matches_hand_computed_value() -> None:
    policy_chosen, policy_rejected = t([-1.0, -4.0], True), t([-3.0, -2.0], True)
    ref_chosen, ref_rejected = t([-2.0, -3.0]), t([-2.0, -3.0])

    loss, metrics = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.5)

    # Pair 0: chosen reward 0.5 * (-1 + 2) = 0.5, rejected 0.5 * (-3 + 2) = -0.5.
    # Pair 1: chosen reward 0.5 * (-4 + 3) = -0.5, rejected 0.5 * (-2 + 3) = 0.5.
    close(loss, (neg_log_sigmoid(1.0) + neg_log_sigmoid(-1.0)) / 2)
    close(metrics["rewards/chosen"], 0.0)
    close(metrics["rewards/rejected"], 0.0)
    close(metrics["rewards/margins"], 0.0)
    close(metrics["rewards/accuracies"], 0.5)
    close(metrics["logps/chosen"], -2.5)
    close(metrics["logps/rejected"], -2.5)


def test_dpo_with_label_smoothing_matches_hand_computed_value() -> None:
    loss, _ = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5, label_smoothing=0.1)

    close(loss, 0.9 * neg_log_sigmoid(1.0) + 0.1 * neg_log_sigmoid(-1.0))


def test_dpo_prefers_chosen_more_likely_than_reference() -> None:
    ref = t([-5.0])
    right, _ = dpo_loss(t([-3.0]), t([-7.0]), ref, ref, beta=0.1)
    wrong, _ = dpo_loss(t([-7.0]), t([-3.0]), ref, ref, beta=0.1)

    assert right < wrong


def test_dpo_logs_detached_rewards_and_passes_gradients_to_the_policy_only() -> None:
    policy_chosen, policy_rejected = t([-1.0, -2.0], True), t([-1.5, -1.0], True)
    ref_chosen, ref_rejected = t([-1.2, -2.0], True), t([-1.4, -1.1], True)

    loss, metrics = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)
    loss.backward()

    assert loss.requires_grad
    assert_detached(metrics)
    assert policy_chosen.grad is not None and (policy_chosen.grad < 0).all()
    assert policy_rejected.grad is not None and (policy_rejected.grad > 0).all()
    assert ref_chosen.grad is None and ref_rejected.grad is None


def test_dpo_on_an_empty_batch_is_zero() -> None:
    empty = torch.zeros(0, requires_grad=True)

    loss, metrics = dpo_loss(empty, empty, torch.zeros(0), torch.zeros(0), beta=0.1)
    loss.backward()

    close(loss, 0.0)
    assert_detached(metrics)


def test_grouped_dpo_matches_hand_computed_value() -> None:
    # One prompt, three completions ranked 0, 1, 2; implicit rewards 0.5 * (pi - ref).
    policy, ref = t([-1.0, -2.0, -6.0], True), t([-2.0, -1.0, -4.0])

    loss, metrics = grouped_dpo_loss(policy, ref, torch.zeros(3), t([0, 1, 2]), beta=0.5)

    r0, r1, r2 = 0.5 * (-1.0 + 2.0), 0.5 * (-2.0 + 1.0), 0.5 * (-6.0 + 4.0)
    expected = (neg_log_sigmoid(r0 - r1) + neg_log_sigmoid(r0 - r2) + neg_log_sigmoid(r1 - r2)) / 3
    close(loss, expected)
    close(metrics["rewards/chosen"], (r0 + r0 + r1) / 3)
    close(metrics["logps/rejected"], (-2.0 - 6.0 - 6.0) / 3)
    assert_detached(metrics)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_grouped_dpo_equals_dpo_on_expanded_pairs(label_smoothing: float) -> None:
    group_ids, ranks = _random_ranked_batch(4)
    generator = torch.Generator().manual_seed(5)
    policy = -torch.rand(len(group_ids), generator=generator) * 20
    ref = -torch.rand(len(group_ids), generator=generator) * 20
    pairs = _expanded_pairs(group_ids, ranks)
    w, lo = (torch.tensor(side) for side in zip(*pairs, strict=True))

    grouped, grouped_metrics = grouped_dpo_loss(
        policy, ref, group_ids, ranks, beta=0.1, label_smoothing=label_smoothing, reduction="pairs"
    )
    expanded, expanded_metrics = dpo_loss(
        policy[w], policy[lo], ref[w], ref[lo], beta=0.1, label_smoothing=label_smoothing
    )

    assert_close(grouped, expanded)
    assert grouped_metrics.keys() == expanded_metrics.keys()
    for name in expanded_metrics:
        assert_close(grouped_metrics[name], expanded_metrics[name])


def test_grouped_dpo_passes_gradients_to_each_completion_once() -> None:
    policy = t([-1.0, -2.0, -3.0, -4.0], True)

    loss, _ = grouped_dpo_loss(policy, t([-1.0, -2.0, -3.0, -4.0]), GROUP_IDS[:4], RANKS[:4], 0.1)
    loss.backward()

    assert policy.grad is not None and torch.isfinite(policy.grad).all()
    assert policy.grad[0] < 0 and policy.grad[1] > 0 and policy.grad[2] > 0


# --------------------------------------------------------------------------------------
# Pair-based grouped losses (arbitrary pairs: disagreements, repeats)
# --------------------------------------------------------------------------------------


def _long(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def test_pairwise_bradley_terry_matches_hand_computed_value_with_a_disagreement() -> None:
    # Prompt 0: completions 0, 1, 2; annotators disagree on (0, 1). Prompt 1: 3 beats 4.
    rewards = t([1.0, 0.0, -1.0, 2.0, 0.5], True)
    winners, losers, pair_group = _long([0, 1, 0, 3]), _long([1, 0, 2, 4]), _long([0, 0, 0, 1])

    per_prompt, metrics = pairwise_bradley_terry_loss(rewards, winners, losers, pair_group)
    per_pair, _ = pairwise_bradley_terry_loss(
        rewards, winners, losers, pair_group, reduction="pairs"
    )

    prompt0 = (neg_log_sigmoid(1.0) + neg_log_sigmoid(-1.0) + neg_log_sigmoid(2.0)) / 3
    close(per_prompt, (prompt0 + neg_log_sigmoid(1.5)) / 2)
    close(per_pair, (3 * prompt0 + neg_log_sigmoid(1.5)) / 4)
    close(metrics["rewards/accuracies"], (2 / 3 + 1.0) / 2)
    close(metrics["rewards/margins"], ((1.0 - 1.0 + 2.0) / 3 + 1.5) / 2)
    assert_detached(metrics)
    per_prompt.backward()
    assert rewards.grad is not None and torch.isfinite(rewards.grad).all()


def test_pairwise_bradley_terry_with_margins_matches_hand_computed_value() -> None:
    rewards = t([1.0, 0.0, 3.0, 1.0])
    winners, losers, pair_group = _long([0, 2]), _long([1, 3]), _long([0, 1])

    loss, _ = pairwise_bradley_terry_loss(
        rewards, winners, losers, pair_group, margins=t([2.0, 0.5])
    )

    close(loss, (neg_log_sigmoid(1.0 - 2.0) + neg_log_sigmoid(2.0 - 0.5)) / 2)


def _random_pairs(seed: int, n: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random pairs within 3 prompts of 4 completions each, repeats and reversals included."""
    generator = torch.Generator().manual_seed(seed)
    group = torch.randint(0, 3, (n,), generator=generator)
    a = torch.randint(0, 4, (n,), generator=generator)
    b = (a + torch.randint(1, 4, (n,), generator=generator)) % 4
    return group * 4 + a, group * 4 + b, group


@pytest.mark.parametrize("seed", [0, 1])
def test_pairwise_bradley_terry_equals_bradley_terry_on_expanded_pairs(seed: int) -> None:
    winners, losers, pair_group = _random_pairs(seed)
    rewards = torch.randn(12, generator=torch.Generator().manual_seed(seed + 10))
    margins = torch.rand(len(winners), generator=torch.Generator().manual_seed(seed + 20))

    pairwise, pairwise_metrics = pairwise_bradley_terry_loss(
        rewards, winners, losers, pair_group, margins, reduction="pairs"
    )
    expanded, expanded_metrics = bradley_terry_loss(rewards[winners], rewards[losers], margins)

    assert_close(pairwise, expanded)
    assert pairwise_metrics.keys() == expanded_metrics.keys()
    for name in expanded_metrics:
        assert_close(pairwise_metrics[name], expanded_metrics[name])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_pairwise_dpo_equals_dpo_on_expanded_pairs(label_smoothing: float) -> None:
    winners, losers, pair_group = _random_pairs(2)
    generator = torch.Generator().manual_seed(6)
    policy = -torch.rand(12, generator=generator) * 20
    ref = -torch.rand(12, generator=generator) * 20

    pairwise, pairwise_metrics = pairwise_dpo_loss(
        policy, ref, winners, losers, pair_group, 0.1, label_smoothing, reduction="pairs"
    )
    expanded, expanded_metrics = dpo_loss(
        policy[winners], policy[losers], ref[winners], ref[losers], 0.1, label_smoothing
    )

    assert_close(pairwise, expanded)
    assert pairwise_metrics.keys() == expanded_metrics.keys()
    for name in expanded_metrics:
        assert_close(pairwise_metrics[name], expanded_metrics[name])


def test_pairwise_dpo_matches_hand_computed_value_per_prompt() -> None:
    # Prompt 0: 0 beats 1 twice (two annotators agree); prompt 1: 3 beats 2.
    policy, ref = t([-1.0, -2.0, -5.0, -3.0], True), t([-2.0, -1.0, -4.0, -4.0])
    winners, losers, pair_group = _long([0, 0, 3]), _long([1, 1, 2]), _long([0, 0, 1])

    loss, metrics = pairwise_dpo_loss(policy, ref, winners, losers, pair_group, beta=0.5)

    r0, r1, r2, r3 = 0.5 * 1.0, 0.5 * -1.0, 0.5 * -1.0, 0.5 * 1.0
    close(loss, (neg_log_sigmoid(r0 - r1) + neg_log_sigmoid(r3 - r2)) / 2)
    close(metrics["logps/chosen"], (-1.0 + -3.0) / 2)
    close(metrics["rewards/rejected"], (r1 + r2) / 2)
    assert_detached(metrics)
    loss.backward()
    assert policy.grad is not None and policy.grad[0] < 0 and policy.grad[1] > 0


@pytest.mark.parametrize("reduction", ["prompt", "pairs"])
def test_pairwise_losses_with_no_pairs_are_zero(reduction: Literal["prompt", "pairs"]) -> None:
    rewards = t([1.0, 2.0], True)
    none = torch.zeros(0, dtype=torch.long)

    bt, bt_metrics = pairwise_bradley_terry_loss(rewards, none, none, none, reduction=reduction)
    dpo, dpo_metrics = pairwise_dpo_loss(
        rewards, t([0.0, 0.0]), none, none, none, beta=0.1, reduction=reduction
    )
    (bt + dpo).backward()

    close(bt, 0.0)
    close(dpo, 0.0)
    assert_detached(bt_metrics)
    assert_detached(dpo_metrics)
    assert rewards.grad is not None and (rewards.grad == 0).all()


def test_pairwise_losses_reject_out_of_range_pairs() -> None:
    with pytest.raises(ValueError, match="outside"):
        pairwise_bradley_terry_loss(t([1.0, 2.0]), _long([0]), _long([2]), _long([0]))
    with pytest.raises(ValueError, match=r"\[P\]"):
        pairwise_dpo_loss(t([1.0]), t([1.0]), _long([0]), _long([0, 0]), _long([0]), beta=0.1)


# --------------------------------------------------------------------------------------
# Listwise (Plackett-Luce)
# --------------------------------------------------------------------------------------


def log_sum_exp(*values: float) -> float:
    return math.log(sum(math.exp(v) for v in values))


def test_ranking_tensors_pad_rankings_and_give_tie_groups_one_rank() -> None:
    index, ranks, mask = ranking_tensors([[[2], [0, 1]], [[4], [3]]])

    assert index.tolist() == [[2, 0, 1], [4, 3, 0]]
    assert ranks.tolist() == [[0, 1, 1], [0, 1, 0]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


def test_plackett_luce_matches_hand_computed_value() -> None:
    # Ranking 0: a > b > c with scores 2, 1, 0. Ranking 1: d > e, padded (NaN there).
    rewards = t([[2.0, 1.0, 0.0], [0.5, 1.5, float("nan")]], True)
    ranks = _long([[0, 1, 2], [0, 1, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])

    loss, metrics = plackett_luce_loss(rewards, ranks, mask)
    loss.backward()

    first = -((2.0 - log_sum_exp(2.0, 1.0, 0.0)) + (1.0 - log_sum_exp(1.0, 0.0)))
    second = -(0.5 - log_sum_exp(0.5, 1.5))
    close(loss, (first + second) / 2)
    # Pairs weigh 1/3 each within ranking 0, and the rankings weigh 1/2 each.
    close(metrics["rewards/chosen"], (2.0 + 2.0 + 1.0) / 6 + 0.5 / 2)
    close(metrics["rewards/rejected"], (1.0 + 0.0 + 0.0) / 6 + 1.5 / 2)
    close(metrics["rewards/accuracies"], 1.0 / 2)
    close(metrics["rewards/top1_accuracies"], 1.0 / 2)
    assert_detached(metrics)
    assert rewards.grad is not None and torch.isfinite(rewards.grad).all()
    assert rewards.grad[1, 2] == 0


def test_plackett_luce_keeps_tied_members_out_of_each_others_denominators() -> None:
    # a and b tied above c: each is picked first against itself and c only.
    rewards = t([[1.0, 3.0, 0.5]])

    loss, metrics = plackett_luce_loss(rewards, _long([[0, 0, 1]]), torch.ones(1, 3))

    expected = -((1.0 - log_sum_exp(1.0, 0.5)) + (3.0 - log_sum_exp(3.0, 0.5)))
    close(loss, expected)
    close(metrics["rewards/accuracies"], 1.0)  # pairs (a, c) and (b, c); (a, b) is a tie
    close(metrics["rewards/top1_accuracies"], 1.0)


def test_plackett_luce_prefers_scores_in_rank_order() -> None:
    ranks, mask = _long([[0, 1, 2, 3]]), torch.ones(1, 4)
    right, right_metrics = plackett_luce_loss(t([[3.0, 2.0, 1.0, 0.0]]), ranks, mask)
    wrong, wrong_metrics = plackett_luce_loss(t([[0.0, 1.0, 2.0, 3.0]]), ranks, mask)

    assert right < wrong
    close(right_metrics["rewards/top1_accuracies"], 1.0)
    close(wrong_metrics["rewards/top1_accuracies"], 0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_plackett_luce_on_two_completions_is_bradley_terry(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randn(8, 2, generator=generator)
    ranks = torch.randint(0, 2, (8, 2), generator=generator)  # some pairs tied
    ranks[0] = torch.tensor([1, 0])
    ranks[1] = torch.tensor([1, 1])
    mask = torch.ones(8, 2, dtype=torch.bool)
    untied = ranks[:, 0] != ranks[:, 1]
    first_wins = ranks[:, 0] < ranks[:, 1]
    chosen = torch.where(first_wins, rewards[:, 0], rewards[:, 1])[untied]
    rejected = torch.where(first_wins, rewards[:, 1], rewards[:, 0])[untied]

    listwise, listwise_metrics = plackett_luce_loss(rewards, ranks, mask)
    pairwise, pairwise_metrics = bradley_terry_loss(chosen, rejected)

    assert_close(listwise, pairwise)
    for name in pairwise_metrics:
        assert_close(listwise_metrics[name], pairwise_metrics[name])


def test_plackett_luce_dpo_on_two_completions_is_dpo() -> None:
    generator = torch.Generator().manual_seed(3)
    policy = -torch.rand(6, 2, generator=generator) * 20
    ref = -torch.rand(6, 2, generator=generator) * 20
    ranks = _long([[0, 1], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1]])
    w, lo = ranks.argmin(dim=1), ranks.argmax(dim=1)
    rows = torch.arange(6)

    listwise, listwise_metrics = plackett_luce_dpo_loss(
        policy, ref, ranks, torch.ones(6, 2), beta=0.1
    )
    pairwise, pairwise_metrics = dpo_loss(
        policy[rows, w], policy[rows, lo], ref[rows, w], ref[rows, lo], beta=0.1
    )

    assert_close(listwise, pairwise)
    for name in pairwise_metrics:
        assert_close(listwise_metrics[name], pairwise_metrics[name])


def test_plackett_luce_dpo_matches_hand_computed_value() -> None:
    # One ranking of three; implicit rewards 0.5 * (pi - ref) = 0.5, -0.5, -1.0.
    policy, ref = t([[-1.0, -2.0, -6.0]], True), t([[-2.0, -1.0, -4.0]], True)

    loss, metrics = plackett_luce_dpo_loss(policy, ref, _long([[0, 1, 2]]), torch.ones(1, 3), 0.5)
    loss.backward()

    r0, r1, r2 = 0.5, -0.5, -1.0
    close(loss, -((r0 - log_sum_exp(r0, r1, r2)) + (r1 - log_sum_exp(r1, r2))))
    close(metrics["rewards/chosen"], (r0 + r0 + r1) / 3)
    close(metrics["logps/chosen"], (-1.0 - 1.0 - 2.0) / 3)
    close(metrics["logps/rejected"], (-2.0 - 6.0 - 6.0) / 3)
    assert_detached(metrics)
    assert policy.grad is not None and policy.grad[0, 0] < 0 and policy.grad[0, 2] > 0
    assert ref.grad is None


def test_plackett_luce_with_only_ties_or_padding_is_zero_without_nan() -> None:
    rewards = t([[1.0, 2.0, 3.0], [float("inf"), float("nan"), 0.0]], True)
    ranks = _long([[0, 0, 0], [0, 0, 0]])
    mask = torch.tensor([[True, True, True], [False, False, False]])

    loss, metrics = plackett_luce_loss(rewards, ranks, mask)
    loss.backward()

    close(loss, 0.0)
    assert rewards.grad is not None and (rewards.grad == 0).all()
    assert_detached(metrics)
    empty, _ = plackett_luce_loss(
        torch.zeros(0, 0, requires_grad=True), _long([]).view(0, 0), torch.zeros(0, 0)
    )
    close(empty, 0.0)


def test_plackett_luce_on_gathered_scores_sends_each_completion_one_gradient() -> None:
    # Two annotators ranked the same three completions: forwarded once, gathered twice.
    scores = t([1.0, 0.0, -1.0], True)
    index, ranks, mask = ranking_tensors([[[0], [1], [2]], [[1], [0], [2]]])

    loss, _ = plackett_luce_loss(scores[index], ranks, mask)
    loss.backward()

    assert scores.grad is not None
    single = t([1.0, 0.0, -1.0], True)
    first, _ = plackett_luce_loss(single[index[:1]], ranks[:1], mask[:1])
    second, _ = plackett_luce_loss(single[index[1:]], ranks[1:], mask[1:])
    ((first + second) / 2).backward()
    assert_close(scores.grad, single.grad)
    assert scores.grad[2] > 0  # last in both rankings


# --------------------------------------------------------------------------------------
# PPO: KL, shaped rewards, GAE, whitening
# --------------------------------------------------------------------------------------


def test_per_token_kl_estimators_match_hand_computed_values() -> None:
    logprobs, ref = t([[-1.0, -2.0]]), t([[-1.5, -1.0]])  # log-ratios 0.5 and -1.0

    close(per_token_kl(logprobs, ref)[0, 0], 0.5)
    close(per_token_kl(logprobs, ref, "k2")[0, 1], 0.5)
    close(per_token_kl(logprobs, ref, "k3")[0, 0], math.exp(-0.5) - 1 + 0.5)
    close(per_token_kl(logprobs, ref, "k3")[0, 1], math.exp(1.0) - 1 - 1.0)


def test_shaped_rewards_put_the_score_on_the_last_real_token() -> None:
    score = t([1.0, 2.0, 5.0])
    logprobs = t([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    ref = t([[-1.5, -1.0, -9.0], [-2.0, -2.0, -2.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 0]])

    rewards = shaped_rewards(score, logprobs, ref, mask, kl_coef=0.1)

    expected = [
        [-0.1 * 0.5, -0.1 * -1.0 + 1.0, 0.0],
        [0.0, -0.1 * 1.0, -0.1 * 1.0 + 2.0],
        [0.0, 0.0, 0.0],  # fully masked: no token for the score to land on
    ]
    assert_close(rewards, t(expected))
    assert not rewards.requires_grad


def test_gae_matches_a_hand_unrolled_example() -> None:
    gamma, lam = 0.9, 0.8
    rewards, values = t([[0.1, -0.2, 1.0]]), t([[0.5, 0.4, 0.3]])

    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma, lam)

    delta2 = 1.0 + gamma * 0.0 - 0.3  # the episode ends after the last token
    delta1 = -0.2 + gamma * 0.3 - 0.4
    delta0 = 0.1 + gamma * 0.4 - 0.5
    a2 = delta2
    a1 = delta1 + gamma * lam * a2
    a0 = delta0 + gamma * lam * a1
    assert_close(advantages, t([[a0, a1, a2]]))
    assert_close(returns, t([[a0 + 0.5, a1 + 0.4, a2 + 0.3]]))


def test_gae_skips_masked_positions_on_either_side() -> None:
    rewards, values = t([[0.1, -0.2, 1.0]]), t([[0.5, 0.4, 0.3]])
    unpadded, _ = gae(rewards, values, torch.ones(1, 3), 0.9, 0.8)
    padded_rewards = t([[7.0, 0.1, -0.2, 1.0, 8.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    padded_values = t([[9.0, 0.5, 0.4, 0.3, 9.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])

    advantages, returns = gae(padded_rewards, padded_values, mask, 0.9, 0.8)

    assert_close(advantages[0, 1:4], unpadded[0])
    assert advantages[0, 0] == 0 and advantages[0, 4] == 0
    assert (advantages[1] == 0).all() and (returns[1] == 0).all()


def test_masked_whiten_gives_mean_zero_and_unit_std_on_set_elements() -> None:
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)) * 5 + 3
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 3:] = False
    mask[3] = False
    x[~mask] = float("nan")  # padding may hold anything

    whitened = masked_whiten(x, mask)

    values = whitened[mask]
    close(values.mean(), 0.0)
    close(values.std(unbiased=False), 1.0)
    assert (whitened[~mask] == 0).all()


def test_masked_whiten_can_keep_the_mean() -> None:
    x, mask = t([[1.0, 3.0, 5.0]]), torch.ones(1, 3)

    whitened = masked_whiten(x, mask, shift_mean=False)

    std = math.sqrt(((1 - 3) ** 2 + 0 + (5 - 3) ** 2) / 3)
    assert_close(whitened, t([[-2 / std + 3, 3.0, 2 / std + 3]]))


def test_masked_reductions_of_nothing_are_zero() -> None:
    x = t([[float("nan"), float("inf")]])
    mask = torch.zeros(1, 2)

    close(masked_mean(x, mask), 0.0)
    assert_close(masked_mean(x, mask, dim=1), t([0.0]))
    assert (masked_whiten(x, mask) == 0).all()


# --------------------------------------------------------------------------------------
# PPO: policy and value losses, entropy
# --------------------------------------------------------------------------------------


def test_ppo_policy_loss_at_ratio_one_is_the_unclipped_surrogate() -> None:
    logprobs = t([[-1.0, -2.0, -0.5]], True)
    advantages = t([[0.5, -1.0, 2.0]])

    loss, metrics = ppo_policy_loss(logprobs, logprobs.detach(), advantages, torch.ones(1, 3), 0.2)
    loss.backward()

    close(loss, -(0.5 - 1.0 + 2.0) / 3)
    close(metrics["policy/clipfrac"], 0.0)
    close(metrics["policy/approx_kl"], 0.0)
    close(metrics["policy/ratio"], 1.0)
    # d/d logp of -A * exp(logp - old) at ratio 1 is -A, averaged over 3 tokens.
    assert logprobs.grad is not None
    assert_close(logprobs.grad, t([[-0.5, 1.0, -2.0]]) / 3)


def test_ppo_policy_loss_clips_and_counts_clipped_tokens() -> None:
    # Ratios 1.5 (A > 0: clipped), 0.5 (A > 0: not clipped), 0.5 (A < 0: clipped), 1.1
    # (inside the range), and a masked token whose huge ratio must be ignored.
    ratios = [1.5, 0.5, 0.5, 1.1, math.exp(100.0)]
    old = t([[-2.0] * 5])
    logprobs = (old + torch.log(t([ratios]))).requires_grad_()
    advantages = t([[1.0, 1.0, -1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])

    loss, metrics = ppo_policy_loss(logprobs, old, advantages, mask, clip_range=0.2)
    loss.backward()

    close(loss, (-1.2 + -0.5 + 0.8 + -1.1) / 4)
    close(metrics["policy/clipfrac"], 2 / 4)
    log_ratios = [math.log(r) for r in ratios[:4]]
    close(metrics["policy/approx_kl"], sum(0.5 * lr**2 for lr in log_ratios) / 4)
    assert_detached(metrics)
    assert logprobs.grad is not None and torch.isfinite(logprobs.grad).all()
    assert logprobs.grad[0, 0] == 0 and logprobs.grad[0, 2] == 0  # clipped: no gradient
    assert logprobs.grad[0, 1] != 0 and logprobs.grad[0, 3] != 0
    assert logprobs.grad[0, 4] == 0  # masked


def test_ppo_value_loss_matches_hand_computed_value() -> None:
    values = t([[0.5, 0.1, 100.0]], True)
    old, returns = t([[0.0, 0.0, 0.0]]), t([[1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 0]])

    loss, metrics = ppo_value_loss(values, old, returns, mask, clip_range_value=0.2)
    loss.backward()

    # Token 0: (0.5 - 1)^2 = 0.25 vs clipped (0.2 - 1)^2 = 0.64. Token 1: both (0.1 - 1)^2.
    close(loss, 0.5 * (0.64 + 0.81) / 2)
    close(metrics["value/clipfrac"], 0.5)
    assert_detached(metrics)
    assert values.grad is not None
    assert values.grad[0, 0] == 0 and values.grad[0, 1] != 0 and values.grad[0, 2] == 0


@pytest.mark.parametrize("loss_fn", ["policy", "value"])
def test_ppo_losses_on_a_fully_masked_batch_are_zero(loss_fn: str) -> None:
    x = t([[float("inf"), float("nan")]], True)
    other, mask = t([[float("nan"), float("-inf")]]), torch.zeros(1, 2)

    if loss_fn == "policy":
        loss, metrics = ppo_policy_loss(x, other, other, mask, 0.2)
    else:
        loss, metrics = ppo_value_loss(x, other, other, mask, 0.2)
    loss.backward()

    close(loss, 0.0)
    assert_detached(metrics)
    assert x.grad is not None and (x.grad == 0).all()


def test_entropy_from_logits_matches_hand_computed_value() -> None:
    logits = t([[[0.0, 0.0, 0.0, 0.0], [math.log(0.7), math.log(0.3), -1e9, -1e9]]])

    both = entropy_from_logits(logits, torch.ones(1, 2))
    first = entropy_from_logits(logits, torch.tensor([[1, 0]]))

    close(first, math.log(4))
    close(both, (math.log(4) - (0.7 * math.log(0.7) + 0.3 * math.log(0.3))) / 2)
    close(entropy_from_logits(logits, torch.zeros(1, 2)), 0.0)


# --------------------------------------------------------------------------------------
# KL controllers
# --------------------------------------------------------------------------------------


def test_adaptive_kl_controller_raises_beta_when_kl_is_above_target() -> None:
    controller = AdaptiveKLController(0.1, target=6.0, horizon=1000)

    controller.update(current_kl=7.5, n_steps=100)

    # e = clip(7.5 / 6 - 1, -0.2, 0.2) = 0.2; beta *= 1 + 0.2 * 100 / 1000.
    assert controller.value == pytest.approx(0.1 * 1.02)


def test_adaptive_kl_controller_lowers_beta_when_kl_is_below_target() -> None:
    controller = AdaptiveKLController(0.1, target=6.0, horizon=1000)

    controller.update(current_kl=5.7, n_steps=100)

    assert controller.value == pytest.approx(0.1 * (1 + (5.7 / 6 - 1) * 0.1))
    assert controller.value < 0.1


def test_fixed_kl_controller_keeps_beta() -> None:
    controller = FixedKLController(0.05)

    controller.update(current_kl=100.0, n_steps=100)

    assert controller.value == 0.05


def test_score_regression_matches_hand_computed_value() -> None:
    # Ranking 0 scored 7, 4, (none); ranking 1 scored 1, padded (NaN there).
    rewards = t([[2.5, 0.5, 9.0], [-1.0, 0.0, float("nan")]], True)
    scores = t([[7.0, 4.0, float("nan")], [1.0, float("nan"), float("nan")]])
    scored = torch.tensor([[True, True, False], [True, False, False]])
    ranks = _long([[0, 1, 2], [0, 1, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])

    loss, metrics = score_regression_loss(rewards, scores, scored, ranks, mask)
    loss.backward()

    # Targets: 7 - 4 = 3, 4 - 4 = 0, 1 - 4 = -3; errors -0.5, 0.5, 2.0.
    close(loss, (0.25 + 0.25 + 4.0) / 3)
    close(metrics["rewards/score_mae"], (0.5 + 0.5 + 2.0) / 3)
    assert_detached(metrics)
    assert rewards.grad is not None and torch.isfinite(rewards.grad).all()
    assert rewards.grad[0, 2] == 0 and rewards.grad[1, 1] == 0  # unscored answers
    close(rewards.grad[0, 0], 2 * -0.5 / 3)


def test_score_regression_with_no_rating_is_zero() -> None:
    rewards = t([[1.0, 2.0]], True)

    loss, _ = score_regression_loss(
        rewards, t([[0.0, 0.0]]), torch.zeros(1, 2), _long([[0, 1]]), torch.ones(1, 2)
    )
    loss.backward()

    close(loss, 0.0)
    assert rewards.grad is not None and (rewards.grad == 0).all()
