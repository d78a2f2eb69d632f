"""The export loads with `datasets` and trains with TRL as it is: one step of each trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeling import snapshots
from tests.factories import UserFactory
from tests.labeling.factories import label_queue, make_queue

pytestmark = pytest.mark.slow


@pytest.fixture
def export_file(db, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=4, k=3, ask_scores=True)
    label_queue(
        queue,
        UserFactory(username="ann", roles=["annotator"]),
        scores_from=lambda ids: {str(ids[0]): 7, str(ids[1]): 4},
    )
    snap = snapshots.snapshot_build(
        name="trl", spec=snapshots.SnapshotFilter(queues=[queue.pk]), eval_fraction=0
    )
    path = tmp_path / "train.jsonl"
    with path.open("wb") as out:
        for chunk in snapshots.snapshot_export_trl_jsonl(snap):
            out.write(chunk)
    return path


def _cpu_args(cls, tmp_path: Path, **extra):  # type: ignore[no-untyped-def]
    return cls(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        **extra,
    )


def test_it_loads_with_datasets(export_file: Path) -> None:
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(export_file), split="train")
    assert dataset.num_rows == 12  # 4 prompts x C(3, 2)
    assert {"prompt", "chosen", "rejected", "margin"} <= set(dataset.column_names)


def test_it_trains_one_dpo_step_with_trl(
    export_file: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    dataset = load_dataset("json", data_files=str(export_file), split="train")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = DPOTrainer(
        model=model,
        args=_cpu_args(DPOConfig, tmp_path, max_length=128),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_path),
    )
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert any("loss" in entry for entry in trainer.state.log_history)


def test_it_trains_one_reward_step_with_trl(
    export_file: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    dataset = load_dataset("json", data_files=str(export_file), split="train")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = RewardTrainer(
        model=model,
        args=_cpu_args(RewardConfig, tmp_path, max_length=128),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_path),
    )
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
