"""Thumbs up/down labels train a KTO run: single-answer queue -> snapshot -> KTO on the tiny
model, end to end through the services."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labeling import snapshots
from tests.labeling.factories import judge_queue, label_queue, make_queue
from tests.training.factories import tiny_policy
from training import datasets, runs
from training.models import TrainingMetric, TrainingRun
from training.runs import RunError


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.PREFLAB_DATA_DIR = tmp_path / "data"
    return settings.PREFLAB_DATA_DIR


def _thumbs(annotator, **kwargs):  # type: ignore[no-untyped-def]
    """A single-answer queue over 3 prompts x 2 answers: answer 0 is good, answer 1 bad."""
    queue = make_queue(mode="single", prompts=3, k=2, ask_scores=True)
    judge_queue(
        queue,
        annotator,
        lambda i, text: "good" if text.startswith("answer 0") else "bad",
        lambda verdict: 6 if verdict == "good" else 2,
    )
    return queue


def test_it_reads_single_answers_and_pairs_as_kto_data(alice) -> None:  # type: ignore[no-untyped-def]
    thumbs = _thumbs(alice)
    pairs = make_queue(mode="pairwise", prompts=1, k=2)
    label_queue(pairs, alice)
    snapshot = snapshots.snapshot_build(
        name="both", spec=snapshots.SnapshotFilter(queues=[thumbs.pk, pairs.pk])
    )

    data = datasets.snapshot_unpaired_data(snapshot=snapshot)

    single = [(e.completion, e.desirable) for e in data.train[:6]]
    assert sorted(single) == [
        ("answer 0 to 0", True),
        ("answer 0 to 1", True),
        ("answer 0 to 2", True),
        ("answer 1 to 0", False),
        ("answer 1 to 1", False),
        ("answer 1 to 2", False),
    ]
    # The pair's answers follow, unpaired: chosen good, rejected bad.
    assert [e.desirable for e in data.train[6:]] == [True, False]
    assert data.eval == []


def test_it_needs_both_kinds_of_single_answer_without_pairs(alice, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=2, k=1)
    judge_queue(queue, alice, lambda i, text: "good")
    only_good = snapshots.snapshot_build(
        name="only good", spec=snapshots.SnapshotFilter(queues=[queue.pk])
    )
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(RunError, match="both good and bad single answers") as caught:
        runs.training_run_create(kind="kto", base_model=tiny_policy(folder), snapshot=only_good)
    assert caught.value.field == "snapshot"


@pytest.mark.slow
def test_thumbs_labels_train_a_kto_run_end_to_end(alice, tiny_model_path: Path) -> None:  # type: ignore[no-untyped-def]
    queue = _thumbs(alice)
    snapshot = snapshots.snapshot_build(
        name="thumbs", spec=snapshots.SnapshotFilter(queues=[queue.pk])
    )
    assert snapshot.row_count == 0 and snapshot.stats["single_answers"] == 6

    run = runs.training_run_create(
        kind="kto",
        base_model=tiny_policy(tiny_model_path),
        snapshot=snapshot,
        config={
            "max_steps": 3,
            "logging_steps": 1,
            "max_length": 64,
            "batch_size": 2,
            "learning_rate": 1e-3,
        },
    )
    assert runs.training_run_execute(run_id=run.pk, heartbeat_interval=60) == "succeeded"

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    losses = [
        m.values["loss"] for m in TrainingMetric.objects.filter(run=run) if "loss" in m.values
    ]
    assert losses and all(math.isfinite(loss) for loss in losses)
    trained = load_file(Path(run.final_dir) / "model.safetensors")
    base = load_file(tiny_model_path / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained[name], base[name])
    assert run.output_model is not None and run.output_model.parent_id == run.base_model_id
