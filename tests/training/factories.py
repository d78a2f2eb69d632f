"""Builders for training tests: snapshots labeled through labeling's services, runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import factory

from generation.models import PolicyModel
from labeling import snapshots
from labeling.models import DatasetSnapshot
from tests.factories import ModelFactory, UserFactory
from tests.generation.factories import PolicyModelFactory
from tests.labeling.factories import label_queue, make_queue
from training.models import TrainingRun

ORDERS: dict[str, Callable[[list[int]], list[list[int]]]] = {
    # The display order, best first (a ranking of every completion).
    "display": lambda ids: [[i] for i in ids],
    # Everything tied.
    "tie": lambda ids: [list(ids)],
}


def labeled_snapshot(
    *,
    prompts: int = 3,
    k: int = 3,
    mode: str = "ranking",
    order: str = "display",
    eval_fraction: float = 0.0,
    seed: int = 0,
    ties: str = "drop",
    demonstration: str = "",
    annotator: Any = None,
    name: str | None = None,
) -> DatasetSnapshot:
    """A queue over a finished job, labeled by one annotator, frozen into a snapshot."""
    queue = make_queue(mode=mode, prompts=prompts, k=k)
    user = annotator or UserFactory(username=f"labeler-{queue.pk}", roles=["annotator"])
    label_queue(queue, user, ORDERS[order], demonstration=demonstration)
    return snapshots.snapshot_build(
        name=name or f"snap-{queue.pk}",
        spec=snapshots.SnapshotFilter(queues=[queue.pk]),
        ties=ties,
        eval_fraction=eval_fraction,
        seed=seed,
    )


def tiny_policy(path: Path, **kwargs: Any) -> PolicyModel:
    return PolicyModelFactory(  # type: ignore[no-any-return]
        name=kwargs.pop("name", "tiny"),
        backend=PolicyModel.Backend.TRANSFORMERS,
        source=str(path),
        **kwargs,
    )


class TrainingRunFactory(ModelFactory[TrainingRun]):
    """A run row in any state, without validation or a worker (for lifecycle guards)."""

    class Meta:
        model = TrainingRun

    name = factory.Sequence(lambda n: f"run-{n}")
    kind = TrainingRun.Kind.DPO
    base_model = factory.SubFactory(PolicyModelFactory)
    snapshot = factory.LazyFunction(lambda: labeled_snapshot(prompts=2, k=2))
    config = factory.LazyFunction(dict)
