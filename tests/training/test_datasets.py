"""A frozen snapshot as the data of each kind of run."""

from __future__ import annotations

import pytest

from generation.models import Completion, Prompt
from labeling import snapshots
from labeling.models import Demonstration, Ranking, SnapshotRow
from labeling.snapshots import snapshot_split_of
from tests.factories import UserFactory
from tests.labeling.factories import label_queue, make_queue
from tests.training.factories import labeled_snapshot
from training import datasets
from training.core.data import PreferenceData, PromptData, SFTData, UnpairedExample


def _texts() -> dict[int, str]:
    return dict(Completion.objects.values_list("id", "text"))


def test_it_groups_a_snapshots_pairs_by_prompt(db) -> None:  # type: ignore[no-untyped-def]
    # Ranking 3 completions gives 3 pairs per prompt over 3 distinct completions.
    snap = labeled_snapshot(prompts=2, k=3)
    data = datasets.snapshot_preference_data(snapshot=snap)
    assert isinstance(data, PreferenceData) and data.eval == []
    assert len(data.train) == 2
    texts = _texts()
    for group in data.train:
        assert len(group.completions) == 3 and len(group.pairs) == 3
        rows = SnapshotRow.objects.filter(snapshot=snap, prompt__text=group.prompt)
        expected = {(texts[r.chosen_id], texts[r.rejected_id]) for r in rows}
        got = {(group.completions[c], group.completions[r]) for c, r in group.pairs}
        assert got == expected
        # Margins are the rank gaps the snapshot recorded.
        assert sorted(group.margins) == sorted(r.margin for r in rows) == [1.0, 1.0, 2.0]


def test_it_keeps_the_snapshots_split_and_drops_ties(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=12, k=2, mode="pairwise", eval_fraction=0.4, seed=3)
    tied = labeled_snapshot(prompts=2, k=2, mode="pairwise", order="tie", ties="keep")
    splits = dict(SnapshotRow.objects.filter(snapshot=snap).values_list("prompt__text", "split"))
    assert set(splits.values()) == {"train", "eval"}

    data = datasets.snapshot_preference_data(snapshot=snap)
    assert {g.prompt for g in data.train} == {p for p, s in splits.items() if s == "train"}
    assert {g.prompt for g in data.eval} == {p for p, s in splits.items() if s == "eval"}
    assert SnapshotRow.objects.filter(snapshot=tied, is_tie=True).count() == 2
    assert datasets.snapshot_preference_data(snapshot=tied) == PreferenceData(train=[], eval=[])


def test_it_reads_a_snapshot_in_a_fixed_number_of_queries(
    db, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=15, k=3)
    with django_assert_max_num_queries(3):
        data = datasets.snapshot_preference_data(snapshot=snap)
    assert len(data.train) == 15
    with django_assert_max_num_queries(4):
        datasets.snapshot_sft_data(snapshot=snap)
    with django_assert_max_num_queries(2):
        datasets.snapshot_prompt_data(snapshot=snap)


def test_it_sends_conversations_as_messages(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=1, k=2, mode="pairwise")
    messages = [{"role": "user", "content": "Hello?"}]
    Prompt.objects.update(messages=messages)
    (group,) = datasets.snapshot_preference_data(snapshot=snap).train
    assert group.prompt == messages
    assert datasets.snapshot_prompt_data(snapshot=snap).train == [messages]


def test_it_trains_sft_on_demonstrations_split_like_the_snapshot(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(
        prompts=12, k=2, mode="pairwise", demonstration="The ideal answer.", eval_fraction=0.4
    )
    assert len(snap.demonstration_ids) == 12
    data = datasets.snapshot_sft_data(snapshot=snap)
    assert isinstance(data, SFTData)
    assert {e.completion for e in [*data.train, *data.eval]} == {"The ideal answer."}
    for split, examples in (("train", data.train), ("eval", data.eval)):
        assert examples
        for example in examples:
            prompt = Prompt.objects.get(text=example.prompt)
            assert snapshot_split_of(prompt.content_hash, snap.seed, snap.eval_fraction) == split
            # The demonstrations split exactly as the snapshot's pairs did.
            assert set(
                SnapshotRow.objects.filter(snapshot=snap, prompt=prompt).values_list(
                    "split", flat=True
                )
            ) == {split}
    assert datasets.snapshot_sft_source(snapshot=snap) == "demonstrations"


def test_it_falls_back_to_each_prompts_most_preferred_completion(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=3, k=3)
    assert not Demonstration.objects.exists()
    assert datasets.snapshot_sft_source(snapshot=snap) == "chosen"
    data = datasets.snapshot_sft_data(snapshot=snap)
    assert len(data.train) == 3 and not data.eval
    texts = _texts()
    for example in data.train:
        rows = SnapshotRow.objects.filter(snapshot=snap, prompt__text=example.prompt)
        wins: dict[int, int] = {}
        for row in rows:
            wins[row.chosen_id] = wins.get(row.chosen_id, 0) + 1
        # The top of the ranking beat both others; the middle one won once.
        best = max(wins, key=lambda c: wins[c])
        assert wins[best] == 2 and example.completion == texts[best]


def test_it_gives_ppo_each_prompt_once_per_split(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=10, k=3, eval_fraction=0.4, seed=1)
    data = datasets.snapshot_prompt_data(snapshot=snap)
    assert isinstance(data, PromptData)
    splits = dict(SnapshotRow.objects.filter(snapshot=snap).values_list("prompt__text", "split"))
    assert sorted(data.train) == sorted(p for p, s in splits.items() if s == "train")
    assert sorted(data.eval) == sorted(p for p, s in splits.items() if s == "eval")
    assert len(set(data.train)) == len(data.train) and data.eval


def test_it_dispatches_on_the_kind(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=1, k=2, mode="pairwise")
    assert isinstance(datasets.snapshot_run_data(snapshot=snap, kind="dpo"), PreferenceData)
    assert isinstance(datasets.snapshot_run_data(snapshot=snap, kind="reward"), PreferenceData)
    assert isinstance(datasets.snapshot_run_data(snapshot=snap, kind="sft"), SFTData)
    assert isinstance(datasets.snapshot_run_data(snapshot=snap, kind="ppo"), PromptData)
    with pytest.raises(ValueError, match="unknown kind"):
        datasets.snapshot_run_data(snapshot=snap, kind="a2c")


def test_it_reads_whole_rankings_as_given_for_the_listwise_loss(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=2, k=3, overlap=2)
    alice = UserFactory(username="alice", roles=["annotator"])
    bob = UserFactory(username="bob", roles=["annotator"])
    label_queue(queue, alice)  # display order, best first
    label_queue(queue, bob, lambda ids: [[ids[2]], [ids[0], ids[1]]])  # a tie below the best
    snap = snapshots.snapshot_build(name="ranked", spec=snapshots.SnapshotFilter(queues=[queue.pk]))

    data = datasets.snapshot_run_data(snapshot=snap, kind="reward", listwise=True)

    assert isinstance(data, PreferenceData) and len(data.train) == 2
    texts = _texts()
    for group in data.train:
        stored = {
            r.annotator.username: r.order
            for r in Ranking.objects.filter(task__prompt__text=group.prompt)
        }
        as_texts = {
            tuple(tuple(group.completions[c] for c in tie) for tie in ranking)
            for ranking in group.rankings
        }
        assert as_texts == {
            tuple(tuple(texts[c] for c in tie) for tie in order) for order in stored.values()
        }
        assert len(group.completions) == 3  # each completion once, for both rankings
        # alice's ranking gives 3 pairs, bob's 2 (his tie gives none).
        assert len(group.pairs) == 5


def test_it_splits_rankings_by_prompt_like_the_pairs(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=12, k=3, eval_fraction=0.4, seed=3)
    splits = dict(SnapshotRow.objects.filter(snapshot=snap).values_list("prompt__text", "split"))

    data = datasets.snapshot_ranking_data(snapshot=snap)

    assert {g.prompt for g in data.train} == {p for p, s in splits.items() if s == "train"}
    assert {g.prompt for g in data.eval} == {p for p, s in splits.items() if s == "eval"}
    assert data.eval and all(len(g.rankings) == 1 for g in [*data.train, *data.eval])


def test_it_reads_rankings_in_a_fixed_number_of_queries(db, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=15, k=3)
    with django_assert_max_num_queries(2):
        data = datasets.snapshot_ranking_data(snapshot=snap)
    assert len(data.train) == 15


def test_it_unpairs_the_pairs_into_good_and_bad_answers_for_kto(db) -> None:  # type: ignore[no-untyped-def]
    snap = labeled_snapshot(prompts=2, k=3)

    data = datasets.snapshot_run_data(snapshot=snap, kind="kto")

    texts = _texts()
    rows = SnapshotRow.objects.filter(snapshot=snap).order_by("id")
    expected = []
    for row in rows:
        prompt = row.prompt.text
        expected += [(prompt, texts[row.chosen_id], True), (prompt, texts[row.rejected_id], False)]
    unpaired = [e for e in data.train if isinstance(e, UnpairedExample)]
    assert len(unpaired) == len(data.train)
    assert [(e.prompt, e.completion, e.desirable) for e in unpaired] == expected


def test_it_reads_each_rankings_scores_for_score_regression(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=1, k=3, ask_scores=True)
    alice = UserFactory(username="alice", roles=["annotator"])
    label_queue(queue, alice, scores_from=lambda ids: {str(ids[0]): 7, str(ids[2]): 2})
    snap = snapshots.snapshot_build(name="scored", spec=snapshots.SnapshotFilter(queues=[queue.pk]))

    (group,) = datasets.snapshot_ranking_data(snapshot=snap).train

    # Display order is best first: the scores line up with the ranking's flattened order.
    assert group.ranking_scores == ((7.0, None, 2.0),)
