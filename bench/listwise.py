"""Listwise vs pairwise reward learning on rankings simulated from a known Plackett-Luce model.

Each prompt has ``k`` completions with feature vectors ``x``; their true rewards are
``u = x . w*`` for a hidden ``w*``, and an annotator's ranking is drawn from the
Plackett-Luce model on ``exp(u)`` (the Gumbel trick: sort ``u + Gumbel noise``). A linear
reward model ``r = x . w`` (a reward model's score head on fixed features) is trained from
the same rankings, the same initialisation, batches and optimizer, for the same number of
steps, once with the pairwise loss the trainers use today
(:func:`training.core.losses.grouped_bradley_terry_loss`, each ranking expanded into its
``C(k, 2)`` pairs, prompts weighed equally) and once with the listwise one
(:func:`training.core.losses.plackett_luce_loss`). Held-out prompts are scored against the
true rewards: pair accuracy (pairs ordered as ``u`` orders them) and top-1 accuracy (the
top-scored completion is the truly best one). For scale, the simulated annotators' own
rankings are scored the same way (how noisy the labels are). Every figure is a mean over
``--seeds`` independent draws.

    .venv/bin/python bench/listwise.py [--quick] [--k 4] [--train 200] [--steps 300]

Prints the headline last:
``pairwise_pair_acc=… listwise_pair_acc=… pairwise_top1=… listwise_top1=…``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from training.core.losses import grouped_bradley_terry_loss, plackett_luce_loss


def simulate(
    prompts: int, k: int, true_w: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features ``[P, k, d]``, true rewards ``[P, k]`` and sampled ranks ``[P, k]`` (0 best)."""
    features = torch.randn(prompts, k, true_w.shape[0], generator=generator)
    utility = features @ true_w
    uniform = torch.rand(prompts, k, generator=generator).clamp(1e-12, 1 - 1e-12)
    gumbel = -torch.log(-torch.log(uniform))
    order = torch.argsort(utility + gumbel, dim=1, descending=True)  # a Plackett-Luce draw
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(k).expand(prompts, k).contiguous())
    return features, utility, ranks


def train(
    loss_name: str,
    features: torch.Tensor,
    ranks: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
) -> torch.Tensor:
    """The linear reward model's weights after ``steps`` Adam steps on one loss."""
    prompts, k, dim = features.shape
    w = torch.zeros(dim, requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=lr)
    order = torch.Generator().manual_seed(seed)  # the same batches for both losses
    permutation = torch.randperm(prompts, generator=order)
    position = 0
    for _ in range(steps):
        if position + batch > prompts:
            permutation, position = torch.randperm(prompts, generator=order), 0
        rows = permutation[position : position + batch]
        position += batch
        rewards = features[rows] @ w  # [B, k]: each completion scored once
        if loss_name == "pairwise":
            group_ids = torch.arange(batch).repeat_interleave(k)
            loss, _ = grouped_bradley_terry_loss(
                rewards.reshape(-1), group_ids, ranks[rows].reshape(-1)
            )
        else:
            loss, _ = plackett_luce_loss(
                rewards, ranks[rows], torch.ones_like(rewards, dtype=torch.bool)
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return w.detach()


def accuracies(
    w: torch.Tensor, features: torch.Tensor, utility: torch.Tensor
) -> tuple[float, float]:
    """Held-out pair accuracy and top-1 accuracy of ``features @ w`` against ``utility``."""
    return accuracies_of_scores(features @ w, utility)


def accuracies_of_scores(scores: torch.Tensor, utility: torch.Tensor) -> tuple[float, float]:
    """Pair and top-1 accuracy of ``scores [P, k]`` against the true ``utility [P, k]``."""
    k = scores.shape[1]
    i, j = torch.triu_indices(k, k, offset=1)
    agree = (scores[:, i] - scores[:, j]) * (utility[:, i] - utility[:, j]) > 0
    top1 = scores.argmax(dim=1) == utility.argmax(dim=1)
    return float(agree.float().mean()), float(top1.float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds (a few seconds)")
    parser.add_argument("--k", type=int, default=4, help="completions per ranking")
    parser.add_argument("--dim", type=int, default=16, help="feature dimensions")
    parser.add_argument("--train", type=int, default=200, help="training rankings")
    parser.add_argument("--heldout", type=int, default=5000, help="held-out prompts")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per arm")
    parser.add_argument("--batch", type=int, default=8, help="rankings per step")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--scale", type=float, default=1.0, help="std of the true rewards")
    parser.add_argument("--seeds", type=int, default=0, help="independent draws (0: 8 or 40)")
    args = parser.parse_args()
    seeds = args.seeds or (8 if args.quick else 40)
    torch.set_num_threads(1)

    started = time.perf_counter()
    results: dict[str, list[tuple[float, float]]] = {"pairwise": [], "listwise": [], "labels": []}
    for seed in range(seeds):
        generator = torch.Generator().manual_seed(seed)
        true_w = torch.randn(args.dim, generator=generator)
        true_w = true_w / true_w.norm() * args.scale
        features, utility, ranks = simulate(args.train, args.k, true_w, generator)
        test_features, test_utility, _ = simulate(args.heldout, args.k, true_w, generator)
        for name in ("pairwise", "listwise"):
            w = train(
                name, features, ranks, steps=args.steps, batch=args.batch, lr=args.lr, seed=seed
            )
            results[name].append(accuracies(w, test_features, test_utility))
        # A ranking as scores: the best gets the highest. Ranks are never tied here.
        results["labels"].append(accuracies_of_scores(-ranks.float(), utility))
    seconds = time.perf_counter() - started

    def mean(name: str, which: int) -> float:
        return statistics.fmean(r[which] for r in results[name])

    print(
        f"k={args.k} train_rankings={args.train} steps={args.steps} batch={args.batch} "
        f"seeds={seeds} seconds={seconds:.1f}"
    )
    for name in ("labels", "pairwise", "listwise"):
        label = "annotators' labels" if name == "labels" else name
        print(f"{label:<18} pair_acc={mean(name, 0):.4f} top1={mean(name, 1):.4f}")
    wins = sum(
        lw[0] > pw[0] for lw, pw in zip(results["listwise"], results["pairwise"], strict=True)
    )
    print(f"listwise beats pairwise on pair accuracy in {wins} of {seeds} draws")
    print(
        f"pairwise_pair_acc={mean('pairwise', 0):.4f} listwise_pair_acc={mean('listwise', 0):.4f} "
        f"pairwise_top1={mean('pairwise', 1):.4f} listwise_top1={mean('listwise', 1):.4f}"
    )


if __name__ == "__main__":
    main()
