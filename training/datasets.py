"""A frozen dataset snapshot as a training run's data (``training.core.data``).

Reward and DPO runs train on the snapshot's non-tie pairs, grouped by prompt, or, with a
listwise loss (Plackett-Luce, score regression), on the listwise records it froze; KTO on
its single-answer labels (good/bad) and its pairs' answers, unpaired into good and bad; SFT
on the
demonstrations frozen with it (or, when it has none, each prompt's best completion); PPO
and GRPO on its distinct prompts. A reward model's scores are normalised on the
snapshot's reference answers. The held-out split is the snapshot's: by prompt, so no prompt
is in both. Every reader runs a fixed number of queries, whatever the snapshot's size.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Q, QuerySet

from generation.backends import PromptInput
from generation.models import Completion, Prompt
from labeling.models import DatasetSnapshot, SnapshotDemonstration, SnapshotRow
from labeling.snapshots import snapshot_rankings, snapshot_singles
from training.core.data import (
    PairRecord,
    PreferenceData,
    PromptData,
    RankingRecord,
    RunData,
    SFTData,
    SFTExample,
    UnpairedData,
    UnpairedExample,
    preference_groups,
    ranking_groups,
)

TRAIN = SnapshotRow.Split.TRAIN
EVAL = SnapshotRow.Split.EVAL


def prompt_input(text: str, messages: list[dict[str, str]] | None) -> PromptInput:
    """What a backend or a runner takes for a stored prompt: its turns, else its text."""
    return messages if messages else text


def _rows(snapshot: DatasetSnapshot) -> QuerySet[SnapshotRow]:
    return SnapshotRow.objects.filter(snapshot=snapshot)


def _prompts_of(rows: QuerySet[SnapshotRow]) -> dict[int, PromptInput]:
    # A subquery rather than a list of ids: no limit on the number of SQL parameters.
    prompts = Prompt.objects.filter(pk__in=rows.values("prompt_id"))
    return {
        pk: prompt_input(text, messages)
        for pk, text, messages in prompts.values_list("pk", "text", "messages")
    }


def _texts_of(rows: QuerySet[SnapshotRow]) -> dict[int, str]:
    completions = Completion.objects.filter(
        Q(pk__in=rows.values("chosen_id")) | Q(pk__in=rows.values("rejected_id"))
    )
    return dict(completions.values_list("pk", "text"))


def snapshot_preference_data(*, snapshot: DatasetSnapshot) -> PreferenceData:
    """The non-tie pairs grouped by prompt, train and held-out, in the snapshot's order."""
    rows = _rows(snapshot).filter(is_tie=False)
    prompts = _prompts_of(rows)
    texts = _texts_of(rows)
    records: dict[str, list[PairRecord]] = {TRAIN: [], EVAL: []}
    for prompt_id, chosen_id, rejected_id, margin, split in rows.order_by("id").values_list(
        "prompt_id", "chosen_id", "rejected_id", "margin", "split"
    ):
        records[split].append(
            PairRecord(
                prompt_key=prompt_id,
                prompt=prompts[prompt_id],
                chosen_key=chosen_id,
                chosen=texts[chosen_id],
                rejected_key=rejected_id,
                rejected=texts[rejected_id],
                margin=margin,
            )
        )
    return PreferenceData(
        train=preference_groups(records[TRAIN]), eval=preference_groups(records[EVAL])
    )


def snapshot_ranking_records(*, snapshot: DatasetSnapshot) -> dict[str, list[RankingRecord]]:
    """The listwise records the snapshot froze at build, by split: the one place listwise
    training reads rankings from.

    Each is :func:`labeling.snapshots.snapshot_rankings`' record (after the snapshot's
    filters and aggregation: one per annotator's ranking under `all`, one per prompt
    otherwise), its completions best first with their ranks (equal ranks are a tie) and
    scores, turned back into tie groups.
    """
    records: dict[str, list[RankingRecord]] = {TRAIN: [], EVAL: []}
    frozen = list(
        snapshot_rankings(snapshot=snapshot).values_list(
            "completion_ids",
            "ranks",
            "scores",
            "split",
            "prompt_id",
            "prompt__text",
            "prompt__messages",
        )
    )
    # Answers are never edited (the record is append-only), so their texts are the frozen ones.
    texts = dict(
        Completion.objects.filter(pk__in={c for ids, *_ in frozen for c in ids}).values_list(
            "pk", "text"
        )
    )
    for ids, ranks, scores, split, prompt_id, text, messages in frozen:
        groups: dict[int, list[tuple[int, str]]] = {}
        for completion, rank in zip(ids, ranks, strict=True):
            groups.setdefault(int(rank), []).append((completion, texts[completion]))
        records[split].append(
            RankingRecord(
                prompt_key=prompt_id,
                prompt=prompt_input(text, messages),
                order=tuple(tuple(groups[rank]) for rank in sorted(groups)),
                scores=tuple(
                    (c, float(v)) for c, v in zip(ids, scores or (), strict=False) if v is not None
                ),
            )
        )
    return records


def snapshot_ranking_data(*, snapshot: DatasetSnapshot) -> PreferenceData:
    """Listwise data: the snapshot's whole rankings grouped by prompt, train and held-out."""
    records = snapshot_ranking_records(snapshot=snapshot)
    return PreferenceData(train=ranking_groups(records[TRAIN]), eval=ranking_groups(records[EVAL]))


def snapshot_demonstrations(*, snapshot: DatasetSnapshot) -> dict[str, list[SFTExample]]:
    """The demonstrations frozen with the snapshot (their texts as they were at build),
    by split, split by prompt as the snapshot's rows are."""
    examples: dict[str, list[SFTExample]] = {TRAIN: [], EVAL: []}
    demos = (
        SnapshotDemonstration.objects.filter(snapshot=snapshot)
        .order_by("id")
        .values_list("text", "prompt__text", "prompt__messages", "split")
    )
    for text, prompt_text, messages, split in demos:
        examples[split].append(
            SFTExample(prompt=prompt_input(prompt_text, messages), completion=text)
        )
    return examples


def snapshot_best_completions(*, snapshot: DatasetSnapshot) -> dict[str, list[SFTExample]]:
    """Each prompt's completion with the most wins among the non-tie pairs, by split.

    Ties between completions go to the one with fewer losses, then to the one seen first.
    """
    rows = _rows(snapshot).filter(is_tie=False)
    wins: dict[int, dict[int, list[int]]] = defaultdict(
        dict
    )  # prompt -> completion -> [w, l, seen]
    split_of: dict[int, str] = {}
    for n, (prompt_id, chosen_id, rejected_id, split) in enumerate(
        rows.order_by("id").values_list("prompt_id", "chosen_id", "rejected_id", "split")
    ):
        split_of[prompt_id] = split
        tally = wins[prompt_id]
        tally.setdefault(chosen_id, [0, 0, n])[0] += 1
        tally.setdefault(rejected_id, [0, 0, n])[1] += 1
    best = {
        prompt_id: min(tally, key=lambda c: (-tally[c][0], tally[c][1], tally[c][2]))
        for prompt_id, tally in wins.items()
    }
    prompts = _prompts_of(rows)
    texts = dict(
        Completion.objects.filter(pk__in=rows.values("chosen_id")).values_list("pk", "text")
    )
    examples: dict[str, list[SFTExample]] = {TRAIN: [], EVAL: []}
    for prompt_id, completion_id in best.items():
        examples[split_of[prompt_id]].append(
            SFTExample(prompt=prompts[prompt_id], completion=texts[completion_id])
        )
    return examples


def snapshot_sft_source(*, snapshot: DatasetSnapshot) -> str:
    """``demonstrations`` when the snapshot has any in its train split, else ``chosen``."""
    return "demonstrations" if snapshot_demonstrations(snapshot=snapshot)[TRAIN] else "chosen"


def snapshot_sft_data(*, snapshot: DatasetSnapshot) -> SFTData:
    """Demonstrations to imitate; a snapshot without any falls back to its best completions."""
    examples = snapshot_demonstrations(snapshot=snapshot)
    if not examples[TRAIN]:
        examples = snapshot_best_completions(snapshot=snapshot)
    return SFTData(train=examples[TRAIN], eval=examples[EVAL])


def snapshot_unpaired_data(*, snapshot: DatasetSnapshot) -> UnpairedData:
    """KTO data, by split: the single-answer labels the snapshot froze (good: desirable),
    then each non-tie pair's chosen answer as desirable and its rejected answer as
    undesirable (TRL's ``unpair_preference_dataset``), each in the snapshot's order."""
    examples: dict[str, list[UnpairedExample]] = {TRAIN: [], EVAL: []}
    singles = snapshot_singles(snapshot=snapshot).values_list(
        "label", "split", "completion__text", "prompt__text", "prompt__messages"
    )
    for label, split, text, prompt_text, messages in singles:
        examples[split].append(UnpairedExample(prompt_input(prompt_text, messages), text, label))
    rows = _rows(snapshot).filter(is_tie=False)
    prompts = _prompts_of(rows)
    texts = _texts_of(rows)
    for prompt_id, chosen_id, rejected_id, split in rows.order_by("id").values_list(
        "prompt_id", "chosen_id", "rejected_id", "split"
    ):
        prompt = prompts[prompt_id]
        examples[split].append(UnpairedExample(prompt, texts[chosen_id], True))
        examples[split].append(UnpairedExample(prompt, texts[rejected_id], False))
    return UnpairedData(train=examples[TRAIN], eval=examples[EVAL])


def snapshot_prompt_data(*, snapshot: DatasetSnapshot) -> PromptData:
    """The snapshot's distinct prompts by split, in the order they were first seen."""
    rows = _rows(snapshot)
    prompts = _prompts_of(rows)
    splits: dict[int, str] = {}
    for prompt_id, split in rows.order_by("id").values_list("prompt_id", "split"):
        splits.setdefault(prompt_id, split)
    return PromptData(
        train=[prompts[p] for p, s in splits.items() if s == TRAIN],
        eval=tuple(prompts[p] for p, s in splits.items() if s == EVAL),
    )


REFERENCE_LIMIT = 512


def snapshot_reference_answers(
    *, snapshot: DatasetSnapshot, limit: int = REFERENCE_LIMIT
) -> tuple[str, list[tuple[PromptInput, str]]]:
    """The answers a reward model's scores are normalised on, and which they are.

    The snapshot's train demonstrations when it has any (``"demonstrations"``: what people
    wrote as good answers, as InstructGPT normalises on its demonstrations), else the
    distinct chosen completions of its train pairs (``"chosen"``); the first ``limit`` in
    the snapshot's order.
    """
    demonstrations = snapshot_demonstrations(snapshot=snapshot)[TRAIN]
    if demonstrations:
        return "demonstrations", [(d.prompt, d.completion) for d in demonstrations[:limit]]
    rows = _rows(snapshot).filter(split=TRAIN, is_tie=False)
    seen: dict[tuple[int, int], None] = {}
    for prompt_id, chosen_id in rows.order_by("id").values_list("prompt_id", "chosen_id"):
        seen.setdefault((prompt_id, chosen_id), None)
        if len(seen) >= limit:
            break
    prompts = _prompts_of(rows)
    texts = dict(Completion.objects.filter(pk__in=[c for _, c in seen]).values_list("pk", "text"))
    return "chosen", [(prompts[p], texts[c]) for p, c in seen]


def snapshot_run_data(*, snapshot: DatasetSnapshot, kind: str, listwise: bool = False) -> RunData:
    """The data a run of ``kind`` trains on; ``listwise`` (reward and DPO runs with the
    Plackett-Luce or score-regression loss) reads whole rankings instead of pairs."""
    if listwise and kind in ("reward", "dpo"):
        return snapshot_ranking_data(snapshot=snapshot)
    readers: dict[str, Any] = {
        "reward": snapshot_preference_data,
        "dpo": snapshot_preference_data,
        "sft": snapshot_sft_data,
        "ppo": snapshot_prompt_data,
        "kto": snapshot_unpaired_data,
        "grpo": snapshot_prompt_data,
    }
    if kind not in readers:
        raise ValueError(f"unknown kind of run {kind!r}")
    return readers[kind](snapshot=snapshot)  # type: ignore[no-any-return]
