"""Losses for reward modelling, DPO and PPO: pure functions of log-probabilities and rewards.

Every loss takes tensors and returns ``(loss, metrics)``: ``loss`` is a scalar with grad,
``metrics`` maps names from the house vocabulary (``loss``, ``rewards/chosen``,
``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``, ``kl``, ``logps/chosen``,
``logps/rejected``; PPO adds ``loss/policy``, ``policy/*``, ``loss/value``, ``value/*``) to
detached 0-dim tensors. They stay tensors so a training step does not force a device sync;
call ``float()`` on them (or ``training.core.reporting.metrics_to_floats``) when logging.

Masks are ``[B, T]`` tensors of bools or 0/1 numbers; masked positions may hold any value,
even ``inf`` or NaN, because every reduction selects with ``torch.where`` rather than
multiplying by the mask. Every reduction over nothing (a fully masked row or batch, a batch
with no pairs) returns 0, never NaN, and keeps the graph so ``loss.backward()`` still works.

Papers cited beside the lines:
- Ouyang et al. 2022, "Training language models to follow instructions with human feedback"
  (InstructGPT).
- Touvron et al. 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models".
- Rafailov et al. 2023, "Direct Preference Optimization" (its Appendix A.3 derives the
  Plackett-Luce form for whole rankings).
- Plackett 1975, "The Analysis of Permutations"; Luce 1959, "Individual Choice Behavior"
  (the Plackett-Luce model of a ranking).
- Mitchell 2023, "A note on DPO with noisy preferences and relationship to IPO" (cDPO).
- Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences".
- Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
  Estimation" (GAE); Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (PPO).
- Schulman 2020, "Approximating KL Divergence" (http://joschu.net/blog/kl-approx.html).
- Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
  Language Models" (GRPO).
- Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
  Learning from Human Feedback in LLMs" (RLOO).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Metrics = dict[str, Tensor]
GroupsArg = Tensor | Sequence[Tensor | Sequence[int]]
Reduction = Literal["prompt", "pairs"]
KLEstimator = Literal["k1", "k2", "k3"]

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "KLController",
    "bradley_terry_loss",
    "dpo_loss",
    "entropy_from_logits",
    "gae",
    "group_advantages",
    "grouped_bradley_terry_loss",
    "grouped_dpo_loss",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "pairwise_bradley_terry_loss",
    "pairwise_dpo_loss",
    "per_token_kl",
    "plackett_luce_dpo_loss",
    "plackett_luce_loss",
    "ppo_policy_loss",
    "ppo_value_loss",
    "ranked_pairs",
    "ranking_tensors",
    "score_regression_loss",
    "reward_from_score",
    "sequence_logps",
    "shaped_rewards",
    "token_logps",
]


# --------------------------------------------------------------------------------------
# Masked reductions
# --------------------------------------------------------------------------------------


def _as_bool(mask: Tensor) -> Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is set; masked-out values (even NaN/inf) are ignored.

    ``x`` and ``mask`` share a shape. ``dim=None`` sums everything to a scalar.
    """
    selected = torch.where(_as_bool(mask), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return selected.sum() if dim is None else selected.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the set positions of ``mask``; 0 where nothing is set (no NaN).

    ``dim=None`` gives a scalar; otherwise the mean along ``dim`` (e.g. ``[B, T] -> [B]``).
    """
    mask = _as_bool(mask)
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Population variance (no Bessel correction) of the set elements; 0 when none are set."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise the set elements of ``x`` to mean 0 and (population) std 1.

    Shapes: ``x``, ``mask`` ``[B, T]`` (any shape works; statistics are over all set
    elements). Masked-out positions come back as 0. With ``shift_mean=False`` the mean is
    added back after scaling (PPO whitens rewards that way so their sign survives). A fully
    masked input gives all zeros.
    """
    mask = _as_bool(mask)
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros((), dtype=x.dtype, device=x.device))


def _mean(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """Plain (or weighted, weights summing to 1) mean of a 1-D tensor; 0 when it is empty."""
    if x.numel() == 0:
        return x.sum()  # 0, still attached to the graph
    if weights is None:
        return x.mean()
    return (x * weights).sum()


# --------------------------------------------------------------------------------------
# Log-probabilities
# --------------------------------------------------------------------------------------


def token_logps(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Log-probability of each label token under ``logits``; 0 at masked positions.

    Shapes: ``logits [B, T, V]``, ``labels [B, T]`` (int), ``mask [B, T]`` -> ``[B, T]``.

    No shift happens here: ``logits[:, t]`` scores ``labels[:, t]``. For a causal LM whose
    output at position ``t`` predicts token ``t + 1``, pass ``logits[:, :-1]``,
    ``input_ids[:, 1:]`` and ``mask[:, 1:]``. Labels at masked positions may be anything
    (``-100`` included). The softmax runs in float32 whatever the logits' dtype.
    """
    mask = _as_bool(mask)
    safe_labels = torch.where(mask, labels, torch.zeros_like(labels))
    logits = logits.float()
    picked = torch.gather(logits, -1, safe_labels.unsqueeze(-1)).squeeze(-1)
    logps = picked - torch.logsumexp(logits, dim=-1)
    return torch.where(mask, logps, torch.zeros((), dtype=logps.dtype, device=logps.device))


def sequence_logps(logits: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sequence sum of token log-probabilities, and how many tokens were summed.

    Shapes: ``logits [B, T, V]``, ``labels [B, T]``, ``mask [B, T]`` ->
    ``(sum_logps [B] float32, token_counts [B] long)``. The caller shifts (see
    :func:`token_logps`). A fully masked row gives ``sum_logps = 0``, ``token_counts = 0``;
    divide by ``token_counts.clamp(min=1)`` for a length-normalised mean.
    """
    return token_logps(logits, labels, mask).sum(dim=-1), _as_bool(mask).sum(dim=-1)


# --------------------------------------------------------------------------------------
# Reward model (Bradley-Terry)
# --------------------------------------------------------------------------------------


def _pair_metrics(
    chosen: Tensor, rejected: Tensor, loss: Tensor, weights: Tensor | None = None
) -> Metrics:
    chosen, rejected = chosen.detach(), rejected.detach()
    return {
        "loss": loss.detach(),
        "rewards/chosen": _mean(chosen, weights),
        "rewards/rejected": _mean(rejected, weights),
        "rewards/margins": _mean(chosen - rejected, weights),
        # A tie counts as wrong: the model has not separated the pair.
        "rewards/accuracies": _mean((chosen > rejected).to(chosen.dtype), weights),
    }


def bradley_terry_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, margin: Tensor | float | None = None
) -> tuple[Tensor, Metrics]:
    """Pairwise reward-model loss: mean of ``-log sigmoid(r_w - r_l - m)``.

    Shapes: ``chosen_rewards [P]``, ``rejected_rewards [P]``, ``margin [P]`` or a float or
    ``None`` (no margin) -> ``(loss [], metrics)``. The margin ``m`` demands that the chosen
    reward exceed the rejected one by at least that much, as in Llama 2's reward model,
    where it grows with how strongly the annotator preferred the chosen response.

    Metrics: ``loss``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``
    (``r_w - r_l`` without the margin) and ``rewards/accuracies`` (``r_w > r_l``), all
    detached. An empty batch gives a loss of 0.
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"chosen_rewards {tuple(chosen_rewards.shape)} and rejected_rewards "
            f"{tuple(rejected_rewards.shape)} must have the same shape"
        )
    logits = chosen_rewards - rejected_rewards
    if margin is not None:
        logits = logits - margin  # Touvron et al. 2023, eq. 2
    losses = -F.logsigmoid(logits)  # Ouyang et al. 2022, eq. 1 (one pair)
    loss = _mean(losses)
    return loss, _pair_metrics(chosen_rewards, rejected_rewards, loss)


def _group_ids(groups: GroupsArg, n: int, device: torch.device) -> Tensor:
    if isinstance(groups, Tensor):
        if groups.shape != (n,):
            raise ValueError(f"group_ids must have shape ({n},), got {tuple(groups.shape)}")
        return groups.to(device)
    # Completions no group lists get an id of their own: a singleton has no pairs.
    ids = torch.arange(len(groups), len(groups) + n, device=device)
    seen = torch.zeros(n, dtype=torch.bool, device=device)
    for g, members in enumerate(groups):
        index = torch.as_tensor(members, dtype=torch.long, device=device)
        if index.numel() and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"group {g} has an index outside 0..{n - 1}")
        if seen[index].any() or index.unique().numel() != index.numel():
            raise ValueError(f"group {g} repeats a completion or shares one with another group")
        seen[index] = True
        ids[index] = g
    return ids


def ranked_pairs(groups: GroupsArg, ranks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every non-tied pair of completions within each prompt group, winner first.

    ``groups`` is either ``group_ids [N]`` (completions sharing an id answer the same
    prompt) or a list of index tensors, one per prompt (completions in no list form no
    pairs). ``ranks [N]``: lower is better, equal ranks are a tie and form no pair.

    Returns ``(winners [P], losers [P], pair_group [P])``: indices into the ``N``
    completions, and for each pair its group as a dense index ``0..G-1``. The order is
    row-major over ``(winner, loser)`` and deterministic, so per-pair ``margins`` can be
    built to match it.
    """
    n = ranks.shape[0]
    ids = _group_ids(groups, n, ranks.device)
    _, dense = torch.unique(ids, return_inverse=True)
    # All C(k, 2) comparisons of every group in one op: an [N, N] "i beats j" matrix.
    beats = (dense[:, None] == dense[None, :]) & (ranks[:, None] < ranks[None, :])
    winners, losers = beats.nonzero(as_tuple=True)
    return winners, losers, dense[winners]


def _pair_weights(pair_group: Tensor, reduction: Reduction) -> Tensor | None:
    """Weights summing to 1 over pairs: ``None`` for a plain mean over pairs."""
    if reduction == "pairs":
        return None
    if reduction != "prompt":
        raise ValueError(f"reduction must be 'prompt' or 'pairs', got {reduction!r}")
    if pair_group.numel() == 0:
        return pair_group.float()
    counts = torch.bincount(pair_group)
    prompts = (counts > 0).sum()
    # Each prompt weighs the same: 1 / (its scored pairs) within it, 1 / prompts across.
    return 1.0 / (counts[pair_group].float() * prompts.float())


def _check_pairs(n: int, winners: Tensor, losers: Tensor, pair_group: Tensor) -> None:
    if not (winners.dim() == 1 and winners.shape == losers.shape == pair_group.shape):
        raise ValueError(
            f"winners, losers and pair_group must all be [P], got {tuple(winners.shape)}, "
            f"{tuple(losers.shape)} and {tuple(pair_group.shape)}"
        )
    if winners.numel() == 0 or winners.device.type != "cpu":
        return  # index checks would force a device sync on an accelerator
    if (
        min(int(winners.min()), int(losers.min())) < 0
        or max(int(winners.max()), int(losers.max())) >= n
    ):
        raise ValueError(f"a pair indexes a completion outside 0..{n - 1}")
    if int(pair_group.min()) < 0:
        raise ValueError("pair_group must hold group indices >= 0")


def pairwise_bradley_terry_loss(
    rewards: Tensor,
    winners: Tensor,
    losers: Tensor,
    pair_group: Tensor,
    margins: Tensor | None = None,
    reduction: Reduction = "prompt",
) -> tuple[Tensor, Metrics]:
    """Bradley-Terry loss over arbitrary preference pairs among once-scored completions.

    InstructGPT's trick (Ouyang et al. 2022, Section 3.5): each of the ``N`` completions
    goes through the reward model once, and every pair is scored from those ``N`` rewards
    in one vectorised op. Unlike :func:`grouped_bradley_terry_loss` the pairs need not come
    from a ranking: annotators may disagree (both ``(a, b)`` and ``(b, a)``), and a pair may
    repeat (it then weighs twice).

    Shapes: ``rewards [N]``; ``winners [P]``, ``losers [P]`` (long indices into ``rewards``:
    the chosen and the rejected completion of each pair); ``pair_group [P]`` (long, >= 0:
    the prompt each pair belongs to); ``margins [P]`` or ``None`` -> ``(loss [], metrics)``.

    Per pair ``-log sigmoid(r_w - r_l - m)`` (Ouyang et al. 2022, eq. 1; the margin ``m``
    as in Touvron et al. 2023, eq. 2). ``reduction="prompt"`` averages the pairs of each
    prompt, then the prompts, as InstructGPT's eq. 1 divides by ``C(k, 2)``; ``"pairs"`` is
    the plain mean over pairs, equal to :func:`bradley_terry_loss` on the expanded pairs.
    Metrics are those of :func:`bradley_terry_loss`, averaged with the same weights. No
    pairs give a loss of 0.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be [N], got {tuple(rewards.shape)}")
    _check_pairs(rewards.shape[0], winners, losers, pair_group)
    if margins is not None and margins.shape != winners.shape:
        raise ValueError(f"margins must have one value per pair ({winners.numel()})")
    weights = _pair_weights(pair_group, reduction)
    chosen, rejected = rewards[winners], rewards[losers]
    logits = chosen - rejected
    if margins is not None:
        logits = logits - margins  # Touvron et al. 2023, eq. 2
    losses = -F.logsigmoid(logits)  # Ouyang et al. 2022, eq. 1
    loss = _mean(losses, weights)
    return loss, _pair_metrics(chosen, rejected, loss, weights)


def grouped_bradley_terry_loss(
    rewards: Tensor,
    groups: GroupsArg,
    ranks: Tensor,
    margins: Tensor | None = None,
    reduction: Reduction = "prompt",
) -> tuple[Tensor, Metrics]:
    """Bradley-Terry loss over every non-tied pair of each prompt's ranked completions.

    InstructGPT's trick (Ouyang et al. 2022, Section 3.5): each of the ``N`` completions
    goes through the reward model once, and all ``C(k, 2)`` pairs of a prompt's ``k``
    completions are scored from those ``N`` rewards in one vectorised op, instead of
    running the model on ``2 * C(k, 2)`` expanded pairs.

    Shapes: ``rewards [N]``; ``groups`` and ``ranks [N]`` as in :func:`ranked_pairs`;
    ``margins [P]`` per pair in :func:`ranked_pairs` order, or ``None``.

    ``reduction="prompt"`` (the default) follows InstructGPT's eq. 1, which divides each
    prompt's summed pair losses by ``C(k, 2)``: the loss is the mean over pairs within a
    prompt, then the mean over prompts, so a prompt with many completions does not outweigh
    one with few. With ties we divide by the number of scored (non-tied) pairs rather than
    ``C(k, 2)``, so every prompt that has a pair weighs the same; prompts with no pair are
    left out. ``reduction="pairs"`` is the plain mean over all pairs, equal to
    :func:`bradley_terry_loss` on the expanded pairs.

    Metrics are those of :func:`bradley_terry_loss`, averaged with the same weights. The
    pairs come from :func:`ranked_pairs`; the loss is :func:`pairwise_bradley_terry_loss`.
    """
    if rewards.dim() != 1 or ranks.shape != rewards.shape:
        raise ValueError(
            f"rewards and ranks must both be [N], got {tuple(rewards.shape)} "
            f"and {tuple(ranks.shape)}"
        )
    winners, losers, pair_group = ranked_pairs(groups, ranks)
    if margins is not None and margins.shape != winners.shape:
        raise ValueError(f"margins must have one value per pair ({winners.numel()})")
    return pairwise_bradley_terry_loss(rewards, winners, losers, pair_group, margins, reduction)


# --------------------------------------------------------------------------------------
# DPO
# --------------------------------------------------------------------------------------


def _dpo_from_rewards(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    label_smoothing: float,
    weights: Tensor | None,
) -> tuple[Tensor, Metrics]:
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    logits = chosen_rewards - rejected_rewards
    # Rafailov et al. 2023, eq. 7; with label_smoothing = eps, the conservative loss of
    # Mitchell 2023, which assumes each label is flipped with probability eps.
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits)
    if label_smoothing > 0.0:
        losses = losses - label_smoothing * F.logsigmoid(-logits)
    loss = _mean(losses, weights)
    metrics = _pair_metrics(chosen_rewards, rejected_rewards, loss, weights)
    metrics["logps/chosen"] = _mean(chosen_logps.detach(), weights)
    metrics["logps/rejected"] = _mean(rejected_logps.detach(), weights)
    return loss, metrics


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Metrics]:
    """Direct Preference Optimization loss over ``P`` preference pairs.

    ``-log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])``,
    averaged over pairs. All four inputs are ``[P]`` summed sequence log-probabilities (see
    :func:`sequence_logps`); the reference ones are constants (computed under no_grad).
    ``label_smoothing = eps`` in ``[0, 0.5)`` gives conservative DPO: ``(1 - eps)`` of the
    loss above plus ``eps`` of the loss with chosen and rejected swapped.

    Metrics: ``rewards/chosen`` is the implicit reward ``beta * (log pi - log pi_ref)`` of
    the chosen response, ``rewards/rejected`` of the rejected one, ``rewards/margins``
    their difference, ``rewards/accuracies`` how often chosen > rejected,
    ``logps/chosen`` / ``logps/rejected`` the policy log-probs, and ``loss``; all detached.
    """
    shape = policy_chosen_logps.shape
    for name, t in (
        ("policy_rejected_logps", policy_rejected_logps),
        ("ref_chosen_logps", ref_chosen_logps),
        ("ref_rejected_logps", ref_rejected_logps),
    ):
        if t.shape != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps.detach())
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps.detach())
    return _dpo_from_rewards(
        chosen_rewards,
        rejected_rewards,
        policy_chosen_logps,
        policy_rejected_logps,
        label_smoothing,
        None,
    )


def pairwise_dpo_loss(
    policy_logps: Tensor,
    ref_logps: Tensor,
    winners: Tensor,
    losers: Tensor,
    pair_group: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    reduction: Reduction = "prompt",
) -> tuple[Tensor, Metrics]:
    """DPO over arbitrary preference pairs among completions whose log-probs are computed once.

    Shapes: ``policy_logps [N]``, ``ref_logps [N]`` (one summed log-prob per completion,
    see :func:`sequence_logps`); ``winners [P]``, ``losers [P]``, ``pair_group [P]`` as in
    :func:`pairwise_bradley_terry_loss` -> ``(loss [], metrics)``. Each completion's
    implicit reward ``beta * (log pi - log pi_ref)`` (Rafailov et al. 2023, eq. 5) is
    gathered into all of its pairs, and each pair gets
    ``-log sigmoid(r_w - r_l)`` (Rafailov et al. 2023, eq. 7), or with
    ``label_smoothing = eps`` the conservative loss of Mitchell 2023.

    ``reduction`` is as in :func:`pairwise_bradley_terry_loss`; ``"pairs"`` equals
    :func:`dpo_loss` on the expanded pairs. Metrics are those of :func:`dpo_loss`, averaged
    with the same weights. No pairs give a loss of 0.
    """
    if policy_logps.dim() != 1 or ref_logps.shape != policy_logps.shape:
        raise ValueError("policy_logps and ref_logps must both be [N]")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    _check_pairs(policy_logps.shape[0], winners, losers, pair_group)
    weights = _pair_weights(pair_group, reduction)
    rewards = beta * (policy_logps - ref_logps.detach())
    return _dpo_from_rewards(
        rewards[winners],
        rewards[losers],
        policy_logps[winners],
        policy_logps[losers],
        label_smoothing,
        weights,
    )


def grouped_dpo_loss(
    policy_logps: Tensor,
    ref_logps: Tensor,
    groups: GroupsArg,
    ranks: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    reduction: Reduction = "prompt",
) -> tuple[Tensor, Metrics]:
    """DPO over every non-tied pair of each prompt's ranked completions.

    Shapes: ``policy_logps [N]``, ``ref_logps [N]`` (one summed log-prob per completion),
    ``groups`` and ``ranks [N]`` as in :func:`ranked_pairs`. Each completion's log-prob is
    computed once (one forward pass per completion, not per pair); its implicit reward
    ``beta * (log pi - log pi_ref)`` is gathered into all ``C(k, 2)`` pairs at once.

    ``reduction`` is as in :func:`grouped_bradley_terry_loss`: ``"prompt"`` weighs every
    prompt equally (mean over its pairs, then over prompts); ``"pairs"`` is the plain mean
    over pairs and equals :func:`dpo_loss` on the expanded pairs. Metrics are those of
    :func:`dpo_loss`, averaged with the same weights. The pairs come from
    :func:`ranked_pairs`; the loss is :func:`pairwise_dpo_loss`.
    """
    if policy_logps.dim() != 1 or ref_logps.shape != policy_logps.shape:
        raise ValueError("policy_logps and ref_logps must both be [N]")
    if ranks.shape != policy_logps.shape:
        raise ValueError(f"ranks must be [N], got {tuple(ranks.shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    winners, losers, pair_group = ranked_pairs(groups, ranks)
    return pairwise_dpo_loss(
        policy_logps, ref_logps, winners, losers, pair_group, beta, label_smoothing, reduction
    )


# --------------------------------------------------------------------------------------
# Listwise (Plackett-Luce)
# --------------------------------------------------------------------------------------


def ranking_tensors(
    rankings: Sequence[Sequence[Sequence[int]]], device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Rankings as padded tensors for the Plackett-Luce losses.

    Each ranking is a list of tie groups, best first, each group a list of indices into
    the batch's ``N`` once-scored completions (the shape ``Ranking.order`` stores). Returns
    ``(index [R, K], ranks [R, K], mask [R, K])`` with ``K`` the longest ranking: ``index``
    points into the ``N`` completions (0 where padded), ``ranks`` is the tie group's
    position (0 = best; equal ranks are a tie), ``mask`` marks the real entries. Gather
    with ``scores[index]`` so each completion is forwarded once however many rankings it
    is in.
    """
    width = max((sum(len(group) for group in r) for r in rankings), default=0)
    index = torch.zeros((len(rankings), width), dtype=torch.long)
    ranks = torch.zeros((len(rankings), width), dtype=torch.long)
    mask = torch.zeros((len(rankings), width), dtype=torch.bool)
    for row, ranking in enumerate(rankings):
        column = 0
        for rank, group in enumerate(ranking):
            for completion in group:
                index[row, column], ranks[row, column] = int(completion), rank
                mask[row, column] = True
                column += 1
    return index.to(device), ranks.to(device), mask.to(device)


def _check_rankings(scores: Tensor, ranks: Tensor, mask: Tensor) -> None:
    if scores.dim() != 2 or ranks.shape != scores.shape or mask.shape != scores.shape:
        raise ValueError(
            f"scores, ranks and mask must all be [R, K], got {tuple(scores.shape)}, "
            f"{tuple(ranks.shape)} and {tuple(mask.shape)}"
        )


def _plackett_luce_nll(scores: Tensor, ranks: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Each ranking's Plackett-Luce negative log-likelihood ``[R]``, and whether it has a term.

    Entry ``i`` contributes ``s_i - logsumexp(s_j : j = i or rank_j > rank_i)``: the log
    probability that ``i`` is picked first among itself and everything ranked below it
    (Plackett 1975; Rafailov et al. 2023, Appendix A.3). Tied entries stay out of each other's
    denominators, so a tie says nothing about their order (as the pairwise losses drop tied
    pairs); an entry with nothing below it contributes exactly 0.
    """
    mask = _as_bool(mask)
    width = scores.shape[-1]
    safe = torch.where(mask, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    below = mask[:, None, :] & (ranks[:, None, :] > ranks[:, :, None])  # [R, i, j]
    eye = torch.eye(width, dtype=torch.bool, device=scores.device)
    denominator = below | eye  # i itself is always in: no row of -inf only, so no NaN
    candidates = torch.where(
        denominator,
        safe[:, None, :].expand(-1, width, -1),
        torch.full((), float("-inf"), dtype=scores.dtype, device=scores.device),
    )
    terms = safe - torch.logsumexp(candidates, dim=-1)  # Rafailov et al. 2023, App. A.3
    zero = torch.zeros((), dtype=terms.dtype, device=terms.device)
    nll = -torch.where(mask, terms, zero).sum(dim=-1)
    has_term = (below & mask[:, :, None]).flatten(1).any(dim=-1)
    return nll, has_term


def _ranking_metrics(scores: Tensor, ranks: Tensor, mask: Tensor, loss: Tensor) -> Metrics:
    """Pair metrics over each ranking's non-tied pairs (each ranking weighs the same), and
    ``rewards/top1_accuracies``: how often the best-scored completion is in the best group.
    """
    mask = _as_bool(mask)
    scores = scores.detach()
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    if scores.numel() == 0:
        names = ("chosen", "rejected", "margins", "accuracies", "top1_accuracies")
        return {"loss": loss.detach(), **{f"rewards/{name}": zero for name in names}}
    safe = torch.where(mask, scores, zero)
    pair = mask[:, :, None] & mask[:, None, :] & (ranks[:, :, None] < ranks[:, None, :])
    per_ranking = pair.flatten(1).sum(dim=-1)
    rankings = (per_ranking > 0).sum()
    weights = (
        pair.to(scores.dtype)
        / (per_ranking.clamp(min=1).to(scores.dtype) * rankings.clamp(min=1).to(scores.dtype))[
            :, None, None
        ]
    )
    chosen, rejected = safe[:, :, None], safe[:, None, :]

    def weighted(values: Tensor) -> Tensor:
        return torch.where(pair, values * weights, zero).sum()

    # The best group is the lowest rank present in the row; padding never counts.
    large = torch.full((), torch.iinfo(torch.long).max, dtype=torch.long, device=ranks.device)
    best_rank = torch.where(mask, ranks.long(), large).amin(dim=-1, keepdim=True)
    best = mask & (ranks.long() == best_rank)
    minus_inf = torch.full((), float("-inf"), dtype=scores.dtype, device=scores.device)
    top_best = torch.where(best, safe, minus_inf).amax(dim=-1)
    top_rest = torch.where(mask & ~best, safe, minus_inf).amax(dim=-1)
    has_pairs = per_ranking > 0
    top1 = torch.where(has_pairs, (top_best > top_rest).to(scores.dtype), zero).sum()
    return {
        "loss": loss.detach(),
        "rewards/chosen": weighted(chosen.expand_as(pair)),
        "rewards/rejected": weighted(rejected.expand_as(pair)),
        "rewards/margins": weighted(chosen - rejected),
        # A tie counts as wrong, as in the pairwise metrics.
        "rewards/accuracies": weighted((chosen > rejected).to(scores.dtype)),
        "rewards/top1_accuracies": top1 / rankings.clamp(min=1).to(scores.dtype),
    }


def _mean_over_rankings(nll: Tensor, has_term: Tensor) -> Tensor:
    zero = torch.zeros((), dtype=nll.dtype, device=nll.device)
    total = torch.where(has_term, nll, zero).sum()
    return total / has_term.sum().clamp(min=1).to(nll.dtype)


def plackett_luce_loss(rewards: Tensor, ranks: Tensor, mask: Tensor) -> tuple[Tensor, Metrics]:
    """Listwise reward-model loss: the Plackett-Luce negative log-likelihood of each ranking.

    Shapes: ``rewards [R, K]`` (one row per ranking, e.g. ``scores[index]`` from
    :func:`ranking_tensors`), ``ranks [R, K]`` (lower is better, equal is a tie),
    ``mask [R, K]`` -> ``(loss [], metrics)``. Per ranking ``tau`` of ``K`` completions
    ``-sum_k log(exp(r_tau(k)) / sum_{j >= k} exp(r_tau(j)))`` (Plackett 1975; the form of
    Rafailov et al. 2023, Appendix A.3, with the reward model's scores as the rewards), averaged
    over the rankings that order anything.

    Ties: each member of a tie group is picked first against itself and everything ranked
    below the group, never against the other members; a ranking that is one tie adds
    nothing, as a tied pair adds nothing to :func:`bradley_terry_loss`'s data. On ``K = 2``
    this is exactly :func:`bradley_terry_loss` on the pairs (``-log sigmoid(r_w - r_l)``).

    Metrics: ``loss``; ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
    ``rewards/accuracies`` over every non-tied pair inside each ranking, each ranking
    weighing the same (as ``reduction="prompt"`` weighs prompts); and
    ``rewards/top1_accuracies``, how often the top-scored completion is in the ranking's
    best group. All detached. No ranking with an order gives a loss of 0.
    """
    _check_rankings(rewards, ranks, mask)
    nll, has_term = _plackett_luce_nll(rewards, ranks, mask)
    loss = _mean_over_rankings(nll, has_term)
    return loss, _ranking_metrics(rewards, ranks, mask, loss)


def plackett_luce_dpo_loss(
    policy_logps: Tensor, ref_logps: Tensor, ranks: Tensor, mask: Tensor, beta: float
) -> tuple[Tensor, Metrics]:
    """DPO on whole rankings: Plackett-Luce over the implicit rewards (Rafailov et al. 2023,
    Appendix A.3).

    Shapes: ``policy_logps [R, K]``, ``ref_logps [R, K]`` (summed completion log-probs, see
    :func:`sequence_logps`, gathered per ranking with :func:`ranking_tensors`' index),
    ``ranks [R, K]``, ``mask [R, K]`` -> ``(loss [], metrics)``. Each completion's implicit
    reward ``beta * (log pi - log pi_ref)`` (eq. 5) plays the score of
    :func:`plackett_luce_loss`; ties are handled as there. On ``K = 2`` this is exactly
    :func:`dpo_loss`. Metrics are those of :func:`plackett_luce_loss` on the implicit
    rewards plus ``logps/chosen`` and ``logps/rejected``, pair-weighted the same way.
    """
    _check_rankings(policy_logps, ranks, mask)
    if ref_logps.shape != policy_logps.shape:
        raise ValueError("policy_logps and ref_logps must have the same shape")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    rewards = beta * (policy_logps - ref_logps.detach())
    nll, has_term = _plackett_luce_nll(rewards, ranks, mask)
    loss = _mean_over_rankings(nll, has_term)
    metrics = _ranking_metrics(rewards, ranks, mask, loss)
    logps = _ranking_metrics(policy_logps, ranks, mask, loss)
    metrics["logps/chosen"] = logps["rewards/chosen"]
    metrics["logps/rejected"] = logps["rewards/rejected"]
    return loss, metrics


def score_regression_loss(
    rewards: Tensor,
    scores: Tensor,
    scored: Tensor,
    ranks: Tensor,
    mask: Tensor,
    midpoint: float = 4.0,
) -> tuple[Tensor, Metrics]:
    """Reward-model loss on absolute ratings: mean of ``(r - (s - midpoint))^2`` over the
    answers an annotator scored.

    Shapes: ``rewards [R, K]``, ``scores [R, K]`` (the 1-7 ratings; any value where not
    scored, NaN included), ``scored [R, K]`` (which answers have a rating), ``ranks [R, K]``
    and ``mask [R, K]`` as in :func:`plackett_luce_loss` -> ``(loss [], metrics)``. The
    target is the score minus the scale's ``midpoint``, so a reward reads in rating units
    around 0. Metrics: ``loss``; the pair metrics of :func:`plackett_luce_loss` over each
    ranking's order (so runs compare with the ranking losses); ``rewards/score_mae``, the
    mean absolute error in rating units. No rating gives a loss of 0.
    """
    _check_rankings(rewards, ranks, mask)
    if scores.shape != rewards.shape or scored.shape != rewards.shape:
        raise ValueError("scores and scored must have the shape of rewards")
    use = _as_bool(scored) & _as_bool(mask)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    target = torch.where(use, scores.to(rewards.dtype) - midpoint, zero)
    error = torch.where(use, rewards, zero) - target
    loss = masked_mean(error**2, use)
    metrics = _ranking_metrics(rewards, ranks, mask, loss)
    metrics["rewards/score_mae"] = masked_mean(error.detach().abs(), use)
    return loss, metrics


# --------------------------------------------------------------------------------------
# PPO
# --------------------------------------------------------------------------------------


def per_token_kl(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator = "k1") -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi.

    Shapes: ``[B, T]`` each -> ``[B, T]`` (unmasked; reduce with :func:`masked_mean`).
    Estimators (Schulman 2020), with ``log_ratio = log pi - log pi_ref``:

    - ``"k1"``: ``log_ratio``. Unbiased, can be negative per token; what Ziegler et al. 2019
      and InstructGPT put in the reward.
    - ``"k2"``: ``log_ratio**2 / 2``. Biased, low variance, never negative.
    - ``"k3"``: ``exp(-log_ratio) - 1 + log_ratio``. Unbiased and never negative.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")


def _last_index(mask: Tensor) -> Tensor:
    """Index of the last set position of each row of ``mask [B, T]``; -1 for an empty row."""
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, torch.full_like(positions, -1)).max(dim=-1).values


def shaped_rewards(
    score: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    kl_coef: float,
    kl_estimator: KLEstimator = "k1",
) -> Tensor:
    """Per-token PPO rewards: a KL penalty on every token, the score on the last one.

    ``R(x, y) = r(x, y) - beta * log(pi(y|x) / pi_ref(y|x))`` (Ziegler et al. 2019, eq. 2;
    Ouyang et al. 2022, eq. 2), spread over tokens: token ``t`` gets ``-kl_coef * kl_t`` and
    the last set token of each row also gets ``score``.

    Shapes: ``score [B]``, ``logprobs [B, T]``, ``ref_logprobs [B, T]``, ``mask [B, T]``
    (response tokens) -> ``[B, T]``, 0 at masked positions. A fully masked row is all 0
    (its score has no token to land on). The result is a constant (no grad).
    """
    mask = _as_bool(mask)
    with torch.no_grad():
        kl = per_token_kl(logprobs, ref_logprobs, kl_estimator)
        zero = torch.zeros((), dtype=kl.dtype, device=kl.device)
        rewards = torch.where(mask, -kl_coef * kl, zero)
        last = _last_index(mask)
        rows = torch.arange(rewards.shape[0], device=rewards.device)
        has_token = last >= 0
        rewards[rows[has_token], last[has_token]] += score.to(rewards.dtype)[has_token]
    return rewards


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over each row's set tokens.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``
    (Schulman et al. 2016, eq. 16), where ``t + 1`` is the next *set* position of the row
    and the episode ends after the last one (``V = 0`` beyond it). Masked positions are
    skipped, so left or right padding and prompt tokens are all fine.

    Shapes: ``rewards [B, T]``, ``values [B, T]``, ``mask [B, T]`` ->
    ``(advantages [B, T], returns [B, T])`` in float32, with ``returns = advantages +
    values``; both 0 at masked positions and constants (no grad).
    """
    mask = _as_bool(mask)
    with torch.no_grad():
        rewards = rewards.float()
        values = values.float()
        batch, length = rewards.shape
        advantages = torch.zeros_like(rewards)
        next_value = torch.zeros(batch, dtype=rewards.dtype, device=rewards.device)
        next_advantage = torch.zeros_like(next_value)
        for t in reversed(range(length)):
            is_set = mask[:, t]
            delta = rewards[:, t] + gamma * next_value - values[:, t]
            advantage = delta + gamma * lam * next_advantage
            advantages[:, t] = torch.where(is_set, advantage, 0.0)
            next_value = torch.where(is_set, values[:, t], next_value)
            next_advantage = torch.where(is_set, advantage, next_advantage)
        zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
        returns = torch.where(mask, advantages + values, zero)
    return advantages, returns


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_range: float
) -> tuple[Tensor, Metrics]:
    """PPO's clipped surrogate objective, negated to a loss, averaged over set tokens.

    ``ratio = exp(log pi - log pi_old)``; per token
    ``max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))`` (Schulman et al. 2017, eq. 7).

    Shapes: ``logprobs``, ``old_logprobs``, ``advantages``, ``mask`` all ``[B, T]`` ->
    ``(loss [], metrics)``. ``old_logprobs`` and ``advantages`` are treated as constants.
    Metrics: ``loss/policy``; ``policy/clipfrac``, the share of set tokens where the
    clipped term won (so the token gives no gradient); ``policy/approx_kl``, the k2
    estimate ``mean((log pi - log pi_old)**2) / 2`` of KL(pi_old || pi); ``policy/ratio``.
    """
    mask = _as_bool(mask)
    # Zero the inputs where masked, before any arithmetic: an inf or NaN there would
    # otherwise turn the (zero) gradient through torch.where into NaN.
    log_ratio = torch.where(mask, logprobs - old_logprobs.detach(), 0.0)
    ratio = torch.exp(log_ratio)
    advantages = torch.where(mask, advantages.detach(), 0.0)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)  # Schulman et al. 2017, eq. 7
    with torch.no_grad():
        metrics = {
            "loss/policy": loss.detach(),
            "policy/clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "policy/approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "policy/ratio": masked_mean(ratio, mask),
        }
    return loss, metrics


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range_value: float
) -> tuple[Tensor, Metrics]:
    """Clipped value loss: ``max((V - R)^2, (V_clip - R)^2) / 2`` averaged over set tokens.

    ``V_clip = V_old + clip(V - V_old, -eps, eps)`` keeps the value head from moving far
    from the values it had when the rollout was scored, as in Ziegler et al.'s
    lm-human-preferences code and OpenAI baselines' PPO2 (the paper's eq. 9 uses the
    unclipped squared error).

    Shapes: all ``[B, T]`` -> ``(loss [], metrics)``. ``old_values`` and ``returns`` are
    constants. Metrics: ``loss/value``; ``value/clipfrac``, the share of set tokens where
    the clipped error was the larger one.
    """
    mask = _as_bool(mask)
    # As in ppo_policy_loss: zero masked inputs first so no NaN can reach the gradient.
    values = torch.where(mask, values, 0.0)
    old_values = torch.where(mask, old_values.detach(), 0.0)
    returns = torch.where(mask, returns.detach(), 0.0)
    clipped_values = old_values + torch.clamp(
        values - old_values, -clip_range_value, clip_range_value
    )
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        metrics = {
            "loss/value": loss.detach(),
            "value/clipfrac": masked_mean((clipped_error > unclipped_error).float(), mask),
        }
    return loss, metrics


def entropy_from_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean entropy (nats) of the next-token distributions at the set positions.

    Shapes: ``logits [B, T, V]``, ``mask [B, T]`` -> ``[]``; 0 when nothing is set.
    ``H = logsumexp(l) - sum(softmax(l) * l)``, computed in float32; the logits must be
    finite (raw model outputs, not ones a sampler filtered to ``-inf``).
    """
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    entropy = torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
    return masked_mean(entropy, mask)


def reward_from_score(
    score: Tensor,
    lengths: Tensor,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    clip: float = 0.0,
    length_penalty: float = 0.0,
) -> Tensor:
    """The task reward of each completion before the KL penalty, from its raw score.

    ``clip((score - mean) / std, -clip, clip) - length_penalty * length``: the score in
    units of the reward model's spread on its reference answers, so the reference answers
    score 0 on average (InstructGPT normalises its reward model so; we divide by the spread
    as well, so beta means the same for every reward model), optionally clipped (``clip``
    0 is off) and charged per completion token.

    Shapes: ``score [B]``, ``lengths [B]`` (completion tokens) -> ``[B]`` float32, no grad.
    ``std`` must be > 0.
    """
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    with torch.no_grad():
        reward = (score.float() - mean) / std
        if clip > 0:
            reward = reward.clamp(-clip, clip)
        return reward - length_penalty * lengths.float()


def group_advantages(
    rewards: Tensor, group_size: int, estimator: Literal["grpo", "rloo"], eps: float = 1e-6
) -> Tensor:
    """Critic-free advantages: each completion's reward against its prompt's other samples.

    ``rewards [G * k]`` holds ``k = group_size`` completions per prompt, prompt-major (the
    order rollouts sample in) -> advantages ``[G * k]`` float32, no grad.

    - ``"grpo"``: ``(R_i - mean(R)) / (std(R) + eps)`` over the group, ``std`` the
      population standard deviation (Shao et al. 2024, Section 4.1.2, outcome
      supervision). A group whose rewards are all equal gets 0.
    - ``"rloo"``: ``R_i - mean_{j != i} R_j``, the REINFORCE leave-one-out baseline
      (Ahmadian et al. 2024, eq. 6; equal to ``k / (k - 1) * (R_i - mean(R))``).

    ``group_size`` must be >= 2 and divide the number of rewards.
    """
    if group_size < 2:
        raise ValueError("a group needs at least two completions")
    if rewards.ndim != 1 or rewards.shape[0] % group_size:
        raise ValueError(f"{tuple(rewards.shape)} rewards do not split into groups of {group_size}")
    with torch.no_grad():
        grouped = rewards.float().view(-1, group_size)
        mean = grouped.mean(dim=-1, keepdim=True)
        if estimator == "grpo":
            std = grouped.std(dim=-1, keepdim=True, unbiased=False)
            advantages = (grouped - mean) / (std + eps)  # Shao et al. 2024, Section 4.1.2
        elif estimator == "rloo":
            others = (grouped.sum(dim=-1, keepdim=True) - grouped) / (group_size - 1)
            advantages = grouped - others  # Ahmadian et al. 2024, eq. 6
        else:
            raise ValueError(f"estimator must be 'grpo' or 'rloo', got {estimator!r}")
    return advantages.reshape(-1)


# --------------------------------------------------------------------------------------
# KL coefficient controllers (plain Python: they hold one float)
# --------------------------------------------------------------------------------------


class KLController:
    """Holds the KL penalty coefficient beta; :meth:`update` after each rollout batch."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        """Adjust ``value`` given the batch's mean KL and how many samples it held."""
        raise NotImplementedError


class FixedKLController(KLController):
    """A constant beta."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController(KLController):
    """Moves beta so the measured KL tracks a target (Ziegler et al. 2019, Section 2.2).

    ``e_t = clip(KL_t / KL_target - 1, -0.2, 0.2)`` and ``beta <- beta * (1 + K_beta * e_t)``
    with ``K_beta = n_steps / horizon``: beta grows while the policy drifts further than the
    target from the reference and shrinks while it stays closer. ``horizon`` is how many
    samples it takes to move beta by about 20%.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be > 0")
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
