from __future__ import annotations

import json
from dataclasses import replace

import pytest

from labeling import services, snapshots
from labeling.models import (
    DatasetSnapshot,
    LabelingQueue,
    SnapshotRanking,
    SnapshotRow,
    TaskCompletion,
)
from labeling.snapshots import build, export
from tests.factories import UserFactory
from tests.labeling.factories import claim_next, label_queue, make_queue
from tests.queries import first_row


def _label(
    queue: LabelingQueue,
    user,
    pick: str = "first",
    flags: tuple[str, ...] = (),
    scores: bool = False,
) -> None:  # type: ignore[no-untyped-def]
    """The user labels every task they can get: 'first' or 'second' slot wins, or 'tie'."""
    orders = {
        "first": lambda ids: [[ids[0]], [ids[1]]],
        "second": lambda ids: [[ids[1]], [ids[0]]],
        "tie": lambda ids: [[ids[0], ids[1]]],
    }
    label_queue(
        queue,
        user,
        orders[pick],
        flags=flags,
        scores_from=(lambda ids: {str(ids[0]): 6, str(ids[1]): 3}) if scores else None,
    )


def _build(queue: LabelingQueue, **kwargs) -> DatasetSnapshot:  # type: ignore[no-untyped-def]
    spec_keys = {"annotators", "exclude_flags", "min_agreement", "date_from", "date_to"}
    spec = snapshots.SnapshotFilter(
        queues=[queue.pk], **{k: kwargs.pop(k) for k in list(kwargs) if k in spec_keys}
    )
    return snapshots.snapshot_build(
        name=kwargs.pop("name", f"snap-{DatasetSnapshot.objects.count()}"), spec=spec, **kwargs
    )


@pytest.fixture
def voted_queue(db):  # type: ignore[no-untyped-def]
    """Three annotators on four pairwise tasks: two pick the first slot, one the second."""
    queue = make_queue(mode="pairwise", prompts=4, k=2, overlap=3)
    users = [UserFactory(username=name, roles=["annotator"]) for name in ("ann", "ben", "cat")]
    _label(queue, users[0], "first")
    _label(queue, users[1], "first")
    _label(queue, users[2], "second")
    return queue


def test_it_keeps_every_comparison_with_all(voted_queue) -> None:  # type: ignore[no-untyped-def]
    snap = _build(voted_queue, aggregation="all", eval_fraction=0)
    assert snap.row_count == 12 == SnapshotRow.objects.filter(snapshot=snap).count()
    assert set(SnapshotRow.objects.filter(snapshot=snap).values_list("annotator", flat=True)) == {
        "ann",
        "ben",
        "cat",
    }
    # The pair's agreement (the majority's share), the same on each of its votes.
    agreement = set(SnapshotRow.objects.filter(snapshot=snap).values_list("agreement", flat=True))
    assert list(agreement) == pytest.approx([2 / 3])


def test_it_takes_the_majority_direction(voted_queue) -> None:  # type: ignore[no-untyped-def]
    snap = _build(voted_queue, aggregation="majority", eval_fraction=0)
    rows = list(SnapshotRow.objects.filter(snapshot=snap).select_related())
    assert len(rows) == 4
    for row in rows:
        task = voted_queue.tasks.get(prompt=row.prompt)
        first = task.slots.get(slot=0).completion_id
        assert row.chosen_id == first and row.votes == 3
        assert row.agreement == pytest.approx(2 / 3)


def test_it_drops_contested_pairs_and_filters_by_agreement(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2, overlap=2)
    _label(queue, UserFactory(username="ann", roles=["annotator"]), "first")
    _label(queue, UserFactory(username="ben", roles=["annotator"]), "second")
    with pytest.raises(snapshots.SnapshotError, match="no comparison"):
        _build(queue, aggregation="majority")
    with pytest.raises(snapshots.SnapshotError, match="no comparison"):
        _build(queue, aggregation="all", min_agreement=0.6)


def test_it_orients_mean_margin_by_the_labels_not_the_scores(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2, overlap=2)
    _label(queue, UserFactory(username="ann", roles=["annotator"]), "second")
    _label(queue, UserFactory(username="ben", roles=["annotator"]), "first")
    # One vote each way: the mean signed rank gap is 0, a tie.
    snap = _build(queue, aggregation="mean-margin", ties="keep", eval_fraction=0)
    row = SnapshotRow.objects.get(snapshot=snap)
    assert row.is_tie and row.margin == 0 and row.agreement == 0


def test_it_drops_or_keeps_ties(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=3, k=2)
    _label(queue, UserFactory(username="ann", roles=["annotator"]), "tie")
    with pytest.raises(snapshots.SnapshotError):
        _build(queue, ties="drop")
    kept = _build(queue, ties="keep", eval_fraction=0)
    assert kept.row_count == 3 and kept.stats["ties"] == 3
    assert b"".join(snapshots.snapshot_export_trl_jsonl(kept)) == b""  # no ties in TRL pairs


def test_it_excludes_flagged_rankings_and_filters_annotators(voted_queue) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    _label(queue, UserFactory(username="dan", roles=["annotator"]), "first", flags=("unsafe",))
    with pytest.raises(snapshots.SnapshotError):
        _build(queue, exclude_flags=["unsafe"])
    only_ann = _build(voted_queue, annotators=["ann"], eval_fraction=0)
    assert only_ann.row_count == 4


def test_it_splits_by_prompt_reproducibly(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=40, k=3)
    label_queue(queue, UserFactory(username="ann", roles=["annotator"]))
    first = _build(queue, eval_fraction=0.25, seed=1)
    again = _build(queue, eval_fraction=0.25, seed=1)
    other = _build(queue, eval_fraction=0.25, seed=2)
    assert first.row_count == 120 and 0 < first.eval_count < 120
    train = set(
        SnapshotRow.objects.filter(snapshot=first, split="train").values_list(
            "prompt_id", flat=True
        )
    )
    held = set(
        SnapshotRow.objects.filter(snapshot=first, split="eval").values_list("prompt_id", flat=True)
    )
    assert train and held and not train & held  # no prompt in both splits
    # The hash covers every exported byte, the snapshot's name included.
    assert first.content_hash != again.content_hash

    def rows(snap):  # type: ignore[no-untyped-def]
        return list(
            SnapshotRow.objects.filter(snapshot=snap)
            .order_by("id")
            .values_list("prompt_id", "chosen_id", "rejected_id", "split")
        )

    assert rows(first) == rows(again) and rows(first) != rows(other)


def test_it_refuses_a_duplicate_name_and_bad_settings(voted_queue) -> None:  # type: ignore[no-untyped-def]
    _build(voted_queue, name="same")
    with pytest.raises(snapshots.SnapshotError, match="already exists"):
        _build(voted_queue, name="same")
    with pytest.raises(snapshots.SnapshotError, match="aggregation"):
        _build(voted_queue, aggregation="median")
    with pytest.raises(snapshots.SnapshotError, match="held-out"):
        _build(voted_queue, eval_fraction=1.5)


def test_it_exports_trl_preference_records(voted_queue) -> None:  # type: ignore[no-untyped-def]
    snap = _build(voted_queue, aggregation="majority", eval_fraction=0, name="exported")
    lines = b"".join(snapshots.snapshot_export_trl_jsonl(snap, chunk_size=3)).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4
    assert set(records[0]) == {
        "prompt",
        "chosen",
        "rejected",
        "margin",
        "rank_gap",
        "score_diff",
        "score_chosen",
        "score_rejected",
        "both_bad",
        "votes",
        "agreement",
        "annotator",
        "queue",
        "snapshot",
    }
    assert all(r["snapshot"] == "exported" and r["queue"] == voted_queue.name for r in records)
    assert all(isinstance(r["prompt"], str) and r["chosen"].startswith("answer") for r in records)


def test_it_exports_conversations_as_message_lists(db) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Prompt

    queue = make_queue(mode="pairwise", prompts=1, k=2)
    Prompt.objects.update(messages=[{"role": "user", "content": "Hi"}])
    _label(queue, UserFactory(username="ann", roles=["annotator"]), "first")
    snap = _build(queue, eval_fraction=0)
    record = json.loads(b"".join(snapshots.snapshot_export_trl_jsonl(snap)))
    assert record["prompt"] == [{"role": "user", "content": "Hi"}]
    assert (
        record["chosen"][0]["role"] == "assistant" and record["rejected"][0]["role"] == "assistant"
    )


def test_it_writes_a_data_card(voted_queue) -> None:  # type: ignore[no-untyped-def]
    snap = _build(voted_queue, name="carded")
    card = snapshots.snapshot_data_card(snap)
    assert snap.content_hash in card and "# carded" in card and "aggregation | all" in card


def test_it_exports_mixed_prompts_in_one_conversational_form(db) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Prompt

    queue = make_queue(mode="pairwise", prompts=2, k=2)
    first = first_row(Prompt.objects.order_by("position"))
    first.messages = [{"role": "user", "content": first.text}]
    first.save()
    _label(queue, UserFactory(username="ann", roles=["annotator"]), "first")
    snap = _build(queue, eval_fraction=0)
    records = [
        json.loads(x) for x in b"".join(snapshots.snapshot_export_trl_jsonl(snap)).splitlines()
    ]
    assert all(isinstance(r["prompt"], list) and r["prompt"][0]["role"] == "user" for r in records)


def test_it_exports_parquet_that_datasets_loads(voted_queue, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datasets import load_dataset

    snap = _build(voted_queue, aggregation="majority", eval_fraction=0)
    path = tmp_path / "train.parquet"
    assert snapshots.snapshot_export_trl_parquet(snap, str(path), chunk_size=3) == 4
    dataset = load_dataset("parquet", data_files=str(path), split="train")
    assert dataset.num_rows == 4 and dataset[0]["chosen"].startswith("answer")


def test_it_exports_rankings_listwise_and_demonstrations_as_sft(db) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Completion

    queue = make_queue(mode="ranking", prompts=2, k=3, ask_scores=True)
    user = UserFactory(username="ann", roles=["annotator"])
    claim = claim_next(queue, user)
    a, b, c = claim.task.slots.order_by("slot").values_list("completion_id", flat=True)
    services.ranking_submit(
        assignment_id=claim.pk,
        user=user,
        submission=services.Submission(
            order=[[b], [a, c]], scores={str(b): 7}, demonstration="Ideal."
        ),
    )
    snap = _build(queue, ties="keep", eval_fraction=0)
    assert len(snap.ranking_ids) == 1 and len(snap.demonstration_ids) == 1
    (record,) = [
        json.loads(x) for x in b"".join(snapshots.snapshot_export_rankings_jsonl(snap)).splitlines()
    ]
    texts = dict(Completion.objects.values_list("id", "text"))
    assert record["completions"] == [texts[b], texts[min(a, c)], texts[max(a, c)]]
    assert record["ranks"] == [1, 2, 2] and record["scores"] == [7, None, None]
    (sft,) = [
        json.loads(x) for x in b"".join(snapshots.snapshot_export_sft_jsonl(snap)).splitlines()
    ]
    assert sft["messages"][-1] == {"role": "assistant", "content": "Ideal."}
    assert sft["messages"][0]["role"] == "user"
    # Frozen: a later demonstration is not in this snapshot.
    claim2 = claim_next(queue, user)
    ids = list(claim2.task.slots.order_by("slot").values_list("completion_id", flat=True))
    services.ranking_submit(
        assignment_id=claim2.pk,
        user=user,
        submission=services.Submission(order=[[i] for i in ids], demonstration="Later."),
    )
    assert len(list(snapshots.snapshot_export_sft_jsonl(snap))) == 1


@pytest.mark.parametrize("conversational", [False, True])
def test_it_writes_the_same_records_on_every_path(voted_queue, conversational: bool) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Prompt

    if conversational:
        first = first_row(Prompt.objects.order_by("position"))
        first.messages = [{"role": "user", "content": "Hi <b>\\n \u00e9"}]
        first.save()
    snap = _build(voted_queue, aggregation="all", eval_fraction=0.5)
    for split in (None, "train", "eval"):
        fast = [
            json.loads(x)
            for x in b"".join(snapshots.snapshot_export_trl_jsonl(snap, split=split)).splitlines()
        ]
        plain = [
            json.loads(x) for x in b"".join(export._trl_jsonl_python(snap, split, 5)).splitlines()
        ]
        assert fast == plain


# Texts an encoder can get wrong: escapes, quotes, backslashes, control characters, line
# and paragraph separators (JSON leaves them raw), composed vs decomposed accents, emoji.
_TRICKY = (
    'Tab\t "quote" \\ back\\slash </script>',
    "Cafe\u0301 (NFD) vs Caf\u00e9 (NFC), \u2028 line \u2029 para",
    "ctrl \x01\x1f\x7f \r\n\U0001f600 \u200b\ufeff",
)


@pytest.mark.parametrize("conversational", [False, True])
@pytest.mark.parametrize("aggregation", ["all", "majority"])
def test_it_writes_every_export_line_as_the_standard_encoder_would(
    db, conversational: bool, aggregation: str
) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Completion, Prompt

    queue = make_queue(
        mode="ranking", prompts=2, k=3, overlap=2, ask_scores=True, name='queue "\u2028" é'
    )
    for i, prompt in enumerate(Prompt.objects.filter(labeling_tasks__queue=queue)):
        prompt.text = _TRICKY[i]
        if conversational and i == 0:
            prompt.messages = [
                {"role": "system", "content": _TRICKY[2]},
                {"role": "user", "content": prompt.text},
            ]
        prompt.save()
    slots = TaskCompletion.objects.filter(task__queue=queue).order_by("completion_id")
    for i, completion_id in enumerate(slots.values_list("completion_id", flat=True)):
        Completion.objects.filter(pk=completion_id).update(text=f" {_TRICKY[i % 3]}  {i}\n")
    label_queue(
        queue,
        UserFactory(username='ann "q"', roles=["annotator"]),
        lambda ids: [[ids[0]], [ids[1]], [ids[2]]],
        scores_from=lambda ids: {str(ids[0]): 7, str(ids[1]): 4},
        demonstration=_TRICKY[1],
    )
    label_queue(
        queue,
        UserFactory(username="bén", roles=["annotator"]),
        lambda ids: [[ids[1]], [ids[0], ids[2]]],
        both_bad=True,
    )
    snap = snapshots.snapshot_build(
        name='naïve "snap" \u2028',
        spec=snapshots.SnapshotFilter(queues=[queue.pk]),
        aggregation=aggregation,
        ties="keep",
        eval_fraction=0,
    )
    texts = dict(Completion.objects.values_list("pk", "text"))
    exports = (
        snapshots.snapshot_export_trl_jsonl(snap),
        snapshots.snapshot_export_rankings_jsonl(snap),
        snapshots.snapshot_export_sft_jsonl(snap),
    )
    records = []
    for export_chunks in exports:
        lines = b"".join(export_chunks).decode("utf-8").split("\n")[:-1]
        assert lines
        for line in lines:
            # Byte for byte what json.dumps writes for the same record.
            assert line == json.dumps(json.loads(line), ensure_ascii=False)
            records.append(json.loads(line))
    assert snapshots.snapshot_export_digest(snap) == snap.content_hash

    def answer(text: str) -> object:
        return [{"role": "assistant", "content": text}] if conversational else text

    # And each text is the stored one, in its place.
    for row in SnapshotRow.objects.filter(snapshot=snap, is_tie=False).order_by("id"):
        record = records.pop(0)
        assert record["chosen"] == answer(texts[row.chosen_id])
        assert record["rejected"] == answer(texts[row.rejected_id])
        assert record["queue"] == 'queue "\u2028" é' and record["snapshot"] == snap.name
    for ranking in SnapshotRanking.objects.filter(snapshot=snap).order_by("id"):
        record = records.pop(0)
        assert record["completions"] == [answer(texts[c]) for c in ranking.completion_ids]
        assert (record["ranks"], record["scores"]) == (ranking.ranks, ranking.scores)
    assert [r["messages"][-1]["content"] for r in records] == [_TRICKY[1]] * 2


def test_it_writes_zero_and_minus_zero_as_the_standard_encoder_would() -> None:
    # Pair lines reuse the JSON of the values after the texts for equal values; 0.0 and
    # -0.0 are equal, their JSON is not.
    writer = build._Writer(
        name="s", conversational=False, prompts={1: ("p", None, "h")}, texts={2: "a", 3: "b"}
    )
    row = build._Row(1, 2, 3, False, 1.0, 0.0, 4.0, 4.0, False, "ann", 1, 1, 1.0, ("x", 1), 1)
    for diff in (0.0, -0.0, 0.0, -0.0):
        line = writer.pair(replace(row, score_diff=diff, rank_gap=-diff), "q")
        record = json.loads(line)
        assert line == json.dumps(record, ensure_ascii=False)
        assert str(record["score_diff"]) == str(diff) and str(record["margin"]) == str(-diff)


def test_it_deletes_a_snapshots_rows_with_it(voted_queue) -> None:  # type: ignore[no-untyped-def]
    """SnapshotRow.snapshot and SnapshotRanking.snapshot have no database constraint (it made
    big builds slow): deleting a snapshot through Django must still take its rows and listwise
    records along, and leave other snapshots whole."""
    kept = _build(voted_queue, name="kept")
    gone = _build(voted_queue, name="gone")
    kept_rows = SnapshotRow.objects.filter(snapshot=kept).count()
    kept_listwise = SnapshotRanking.objects.filter(snapshot=kept).count()
    assert kept_rows > 0 and SnapshotRow.objects.filter(snapshot=gone).count() == kept_rows
    assert kept_listwise > 0
    assert SnapshotRanking.objects.filter(snapshot=gone).count() == kept_listwise
    gone_id = gone.pk
    gone.delete()
    assert not SnapshotRow.objects.filter(snapshot_id=gone_id).exists()
    assert not SnapshotRanking.objects.filter(snapshot_id=gone_id).exists()
    assert SnapshotRow.objects.filter(snapshot=kept).count() == kept_rows
    assert SnapshotRanking.objects.filter(snapshot=kept).count() == kept_listwise
