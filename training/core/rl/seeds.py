"""Seeds of an RL run: everything random in rollout ``r`` derives from ``(seed, r)``, and
each epoch's prompt order from ``(seed, epoch)``, so a resumed run follows the same path
as an uninterrupted one."""

from __future__ import annotations

import random

__all__ = ["epoch_order", "mix_seed", "prompt_indices"]


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes (unlike ``hash``)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value * 6364136223846793005 + part + 1442695040888963407) % (1 << 63)
    return value


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    order = list(range(n))
    random.Random(mix_seed(seed, 0, epoch)).shuffle(order)
    return order


def prompt_indices(seed: int, start: int, count: int, n: int) -> list[int]:
    """Indices of the prompts ``start .. start + count`` of the endless shuffled stream."""
    orders: dict[int, list[int]] = {}
    picked = []
    for i in range(start, start + count):
        epoch, position = divmod(i, n)
        if epoch not in orders:
            orders[epoch] = epoch_order(seed, epoch, n)
        picked.append(orders[epoch][position])
    return picked
