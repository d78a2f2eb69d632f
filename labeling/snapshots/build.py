"""Building a frozen dataset snapshot of the comparison store.

A snapshot is built once from a filter and an aggregation rule: the labels it selects are
aggregated into pair rows, listwise records and demonstrations, and every line any export
of it will hold is written with it, under a content hash over all of them. Nothing here
runs again for the snapshot afterwards; :mod:`labeling.snapshots.export` streams what was
frozen.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from generation.models import Prompt
from labeling.models import (
    AI_LABELER_GROUP,
    Comparison,
    DatasetSnapshot,
    Demonstration,
    LabelingQueue,
    LabelingTask,
    Ranking,
    SnapshotDemonstration,
    SnapshotRanking,
    SnapshotRow,
    SnapshotSingle,
    TaskCompletion,
    Verdict,
)
from labeling.review import rejected_labels
from labeling.snapshots.lines import LinesDigest

_JSON = json.JSONEncoder(ensure_ascii=False)


class SnapshotError(ValueError):
    """A snapshot request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class SnapshotFilter:
    """Which labels go in. Empty fields mean no restriction."""

    queues: Sequence[int]
    date_from: datetime | None = None
    date_to: datetime | None = None
    annotators: Sequence[str] = ()
    exclude_flags: Sequence[str] = ()
    # Whole pairs whose votes agree less than this (the majority's share) are left out.
    min_agreement: float = 0.0
    # Labels by AI labelers (the ai-labeler group) go in only when asked for.
    include_ai: bool = False
    # "Both bad" labels: keep (default), drop, or keep only them.
    both_bad: str = "keep"

    def as_json(self) -> dict[str, Any]:
        return {
            "queues": list(self.queues),
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "annotators": list(self.annotators),
            "exclude_flags": list(self.exclude_flags),
            "min_agreement": self.min_agreement,
            "include_ai": self.include_ai,
            "both_bad": self.both_bad,
        }


BOTH_BAD_CHOICES = ("keep", "drop", "only")


@dataclass(slots=True)
class _Label:
    """A (current) ranking selected by the filter."""

    ranking_id: int
    annotator: str
    scores: dict[int, float]
    both_bad: bool
    prompt_id: int
    queue_id: int
    # Single answers: "good" or "bad"; empty on rankings and pairs.
    verdict: str = ""
    # Its listwise group under `all`.
    group: tuple[str, int] = ("", 0)

    def __post_init__(self) -> None:
        self.group = ("ranking", self.ranking_id)


@dataclass(slots=True)
class _Row:
    """A pair row of the snapshot. A vote (one comparison of a selected label) is the row
    it makes under `all`; the other rules aggregate a pair's votes into one row."""

    prompt_id: int
    chosen_id: int
    rejected_id: int
    is_tie: bool
    rank_gap: float
    score_diff: float | None
    score_chosen: float | None
    score_rejected: float | None
    both_bad: bool
    annotator: str
    queue_id: int
    votes: int
    agreement: float
    # The listwise group the row belongs to: a ranking under `all`, else the prompt.
    group: tuple[Any, ...]
    # +1: the low id of the unordered pair preferred, -1: the high id, 0: a tie.
    direction: int
    split: str = SnapshotRow.Split.TRAIN


def _within(qs: QuerySet[Any], spec: SnapshotFilter, *, date_field: str) -> QuerySet[Any]:
    """The date and annotator parts of the filter (AI labelers left out unless asked for)."""
    if spec.date_from:
        qs = qs.filter(**{f"{date_field}__gte": spec.date_from})
    if spec.date_to:
        qs = qs.filter(**{f"{date_field}__lt": spec.date_to})
    if spec.annotators:
        qs = qs.filter(annotator__username__in=list(spec.annotators))
    if not spec.include_ai:
        qs = qs.exclude(annotator__groups__name=AI_LABELER_GROUP)
    return qs


def _excluded(flags: Any, spec: SnapshotFilter) -> bool:
    return bool(spec.exclude_flags) and bool(set(spec.exclude_flags) & set(flags or []))


def _rejected(spec: SnapshotFilter) -> dict[int, tuple[int, int]]:
    """The current labels of the snapshot's queues that a lead rejected in review:
    ranking id -> (task id, annotator id). They stay out of the snapshot (its stats count
    them), with the demonstrations written with them."""
    rankings = rejected_labels(Ranking.objects.filter(task__queue_id__in=spec.queues))
    return {
        pk: (task, who) for pk, task, who in rankings.values_list("pk", "task_id", "annotator_id")
    }


def _as_text(json_field: str) -> Cast:
    """A JSON column read as its text, for :func:`_parsed`: Django's per-row JSON converter
    costs more than the parse, and most of a big snapshot's values are empty."""
    return Cast(json_field, output_field=TextField())


def _parsed(text: str | None) -> Any:
    """What Django would have read from the JSON column, from its text."""
    if text is None:
        return None
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def _labels(spec: SnapshotFilter, *, rejected: Container[int] = ()) -> dict[int, _Label]:
    """The current rankings the filter selects, by id, less the ``rejected`` ones. Dates are
    first-submitted times, so an edit never moves an old vote into a later date range."""
    rankings = _within(
        Ranking.objects.filter(task__queue_id__in=spec.queues), spec, date_field="created_at"
    )
    labels: dict[int, _Label] = {}
    for pk, who, scores, flags, both_bad, prompt_id, queue_id, verdict in rankings.values_list(
        "id",
        "annotator__username",
        _as_text("scores"),
        _as_text("flags"),
        "both_bad",
        "task__prompt_id",
        "task__queue_id",
        "verdict",
    ).iterator(chunk_size=5000):
        if pk in rejected or (spec.exclude_flags and _excluded(_parsed(flags), spec)):
            continue
        if (spec.both_bad == "drop" and both_bad) or (spec.both_bad == "only" and not both_bad):
            continue
        labels[pk] = _Label(
            pk,
            who,
            {int(k): float(v) for k, v in (_parsed(scores) or {}).items()},
            both_bad,
            prompt_id,
            queue_id,
            verdict,
        )
    return labels


def _votes_by_pair(
    labels: dict[int, _Label], spec: SnapshotFilter
) -> dict[tuple[int, int, int], list[_Row]]:
    """Votes on each unordered pair (prompt, low id, high id), in comparison-id order, each
    as its row under `all` (its agreement, the pair's, still 1.0)."""
    pairs: dict[tuple[int, int, int], list[_Row]] = {}
    comparisons = Comparison.objects.filter(queue_id__in=spec.queues).order_by("id")
    for ranking_id, chosen, rejected, tie, gap, diff in comparisons.values_list(
        "ranking_id", "chosen_id", "rejected_id", "is_tie", "rank_gap", "score_diff"
    ).iterator(chunk_size=10000):
        label = labels.get(ranking_id)
        if label is None:
            continue
        if chosen < rejected:
            key, direction = (label.prompt_id, chosen, rejected), 1
        else:
            key, direction = (label.prompt_id, rejected, chosen), -1
        scores = label.scores
        # Positional: the hot loop of a big snapshot (fields in _Row's order).
        vote = _Row(
            label.prompt_id,
            chosen,
            rejected,
            tie,
            gap,
            diff,
            scores.get(chosen),
            scores.get(rejected),
            label.both_bad,
            label.annotator,
            label.queue_id,
            1,
            1.0,
            label.group,
            0 if tie else direction,
        )
        votes = pairs.get(key)
        if votes is None:
            pairs[key] = [vote]
        else:
            votes.append(vote)
    return pairs


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _aggregate(pairs: dict[tuple[int, int, int], list[_Row]], rule: str) -> list[_Row]:
    """Rows under the aggregation rule; ``agreement`` is always the pair's: the share of
    its votes in the row's direction (under `all`, the majority direction's share).

    Directions come from the labels (chosen, rejected, tie), never from a margin's sign.
    ``rank_gap`` (= ``margin``) is never negative: under `majority` the mean gap of the
    agreeing votes, under `mean-margin` the absolute mean of the signed gaps. Aggregated
    scores are the means over the agreeing votes.
    """
    rows: list[_Row] = []
    for (prompt_id, low, high), votes in pairs.items():
        if rule == DatasetSnapshot.Aggregation.ALL:
            if len(votes) > 1:  # a single vote agrees with itself: 1.0 already
                top = max(sum(1 for v in votes if v.direction == d) for d in (1, -1, 0))
                for v in votes:
                    v.agreement = top / len(votes)
            rows.extend(votes)
            continue
        if len(votes) == 1:  # the common case, without counting
            counts = {1: 0, -1: 0, 0: 0}
            counts[votes[0].direction] = 1
        else:
            counts = {d: sum(1 for v in votes if v.direction == d) for d in (1, -1, 0)}
        if rule == DatasetSnapshot.Aggregation.MAJORITY:
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            (direction, top), (_, second) = ranked[0], ranked[1]
            if top == second:
                continue  # contested: no majority
            agreeing = [v for v in votes if v.direction == direction]
            gap = sum(v.rank_gap for v in agreeing) / len(agreeing)
        else:  # mean-margin
            mean = sum(v.direction * v.rank_gap for v in votes) / len(votes)
            direction = (mean > 0) - (mean < 0)
            agreeing = [v for v in votes if v.direction == direction]
            gap = abs(mean)
        chosen, rejected = (high, low) if direction < 0 else (low, high)

        # A tie's vote may name the pair the other way round.
        pairs_scored = [
            (v.score_chosen, v.score_rejected)
            if v.chosen_id == chosen
            else (v.score_rejected, v.score_chosen)
            for v in agreeing
        ]
        both = [(c, r) for c, r in pairs_scored if c is not None and r is not None]
        rows.append(
            _Row(
                prompt_id=prompt_id,
                chosen_id=chosen,
                rejected_id=rejected,
                is_tie=direction == 0,
                rank_gap=gap,
                score_diff=_mean(c - r for c, r in both) if both else None,
                score_chosen=_mean(c for c, _ in pairs_scored),
                score_rejected=_mean(r for _, r in pairs_scored),
                both_bad=2 * sum(1 for v in agreeing if v.both_bad) > len(agreeing),
                annotator="",
                queue_id=agreeing[0].queue_id if agreeing else votes[0].queue_id,
                votes=len(votes),
                agreement=len(agreeing) / len(votes),
                group=("prompt", prompt_id),
                direction=direction,
            )
        )
    return rows


@dataclass(slots=True)
class _Single:
    prompt_id: int
    completion_id: int
    label: bool
    score: float | None
    annotator: str
    queue_id: int
    votes: int
    agreement: float
    split: str = SnapshotRow.Split.TRAIN
    line: str = ""


def _singles(labels: dict[int, _Label], rule: str) -> list[_Single]:
    """The single-answer labels among ``labels`` under the aggregation rule: every label
    under `all`; otherwise one row per prompt and answer with the majority verdict (its
    score the mean of the agreeing votes), contested answers (as many good as bad) left
    out. A mean of +1/-1 votes has the majority's sign, so `mean-margin` keeps the same
    rows as `majority`. ``agreement`` is the share of the answer's votes with the row's
    verdict (under `all`, the majority verdict's share)."""
    single_ids = sorted(pk for pk, label in labels.items() if label.verdict)
    answer_of: dict[int, int] = {}
    for chunk in _in_chunks(single_ids):
        for pk, order in Ranking.objects.filter(pk__in=chunk).values_list("pk", "order"):
            answer_of[pk] = order[0][0]
    votes: dict[tuple[int, int], list[_Label]] = defaultdict(list)
    for pk in single_ids:
        votes[(labels[pk].prompt_id, answer_of[pk])].append(labels[pk])
    rows: list[_Single] = []
    for (prompt_id, completion_id), given in votes.items():
        good = sum(1 for label in given if label.verdict == Verdict.GOOD)
        if rule == DatasetSnapshot.Aggregation.ALL:
            agreement = max(good, len(given) - good) / len(given)
            rows.extend(
                _Single(
                    prompt_id,
                    completion_id,
                    label.verdict == Verdict.GOOD,
                    label.scores.get(completion_id),
                    label.annotator,
                    label.queue_id,
                    1,
                    agreement,
                )
                for label in given
            )
            continue
        if 2 * good == len(given):
            continue  # contested: no majority
        verdict = 2 * good > len(given)
        agreeing = [label for label in given if (label.verdict == Verdict.GOOD) == verdict]
        rows.append(
            _Single(
                prompt_id,
                completion_id,
                verdict,
                _mean(label.scores.get(completion_id) for label in agreeing),
                "",
                agreeing[0].queue_id,
                len(given),
                len(agreeing) / len(given),
            )
        )
    return rows


def snapshot_split_of(prompt_hash: str, seed: int, eval_fraction: float) -> str:
    """Held-out split by prompt: every row of a prompt lands in the same split.

    Public so that data frozen beside the pairs (demonstrations) splits the same way.
    """
    digest = hashlib.sha256(f"{seed}:{prompt_hash}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    return SnapshotRow.Split.EVAL if draw < eval_fraction else SnapshotRow.Split.TRAIN


def _in_chunks(ids: Iterable[int], size: int = 5000) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _prompts(ids: Iterable[int]) -> dict[int, tuple[str, Any, str]]:
    """prompt id -> (text, messages, content hash)."""
    out: dict[int, tuple[str, Any, str]] = {}
    for chunk in _in_chunks(ids):
        for pk, text, messages, key in Prompt.objects.filter(pk__in=chunk).values_list(
            "pk", "text", "messages", "content_hash"
        ):
            out[pk] = (text, messages, key)
    return out


def _queue_prompts(queue_ids: Sequence[int]) -> dict[int, tuple[str, Any, str]]:
    """prompt id -> (text, messages, content hash) for the queues' tasks, in one join."""
    tasks = LabelingTask.objects.filter(queue_id__in=list(queue_ids))
    return {
        pk: (text, _parsed(messages), key)
        for pk, text, messages, key in tasks.values_list(
            "prompt_id", "prompt__text", _as_text("prompt__messages"), "prompt__content_hash"
        ).iterator(chunk_size=10000)
    }


def _queue_completion_texts(queue_ids: Sequence[int]) -> dict[int, str]:
    """completion id -> text for the queues' tasks, in one join."""
    slots = TaskCompletion.objects.filter(task__queue_id__in=list(queue_ids))
    return dict(slots.values_list("completion_id", "completion__text").iterator(chunk_size=10000))


class _Encoded(dict[Any, str]):
    """key -> its JSON fragment, encoded on first use (a plain lookup after that)."""

    def __init__(self, encode: Callable[[Any], str]) -> None:
        super().__init__()
        self._encode = encode

    def __missing__(self, key: Any) -> str:
        encoded = self[key] = self._encode(key)
        return encoded


class _Writer:
    """The JSON lines of a snapshot's exports, written once at build (and then frozen).

    One snapshot is exported in one form: if any prompt is a conversation, plain prompts
    become a single user message, so every row has the same column types.

    A big snapshot writes hundreds of thousands of lines that share a few texts, so the TRL
    and listwise lines are assembled from JSON fragments encoded once each (a prompt, an
    answer, a name), byte for byte what ``self.encode`` makes of the same dict: keys in
    this order, ``", "`` and ``": "`` separators, floats as ``float.__repr__`` (the tests
    check it against the standard encoder).
    """

    def __init__(
        self,
        *,
        name: str,
        conversational: bool,
        prompts: dict[int, tuple[str, Any, str]],
        texts: dict[int, str],
    ) -> None:
        self.name = name
        self.conversational = conversational
        self.encode = _JSON.encode  # one encoder: json.dumps with options builds one per call
        # prompt id, completion id, name -> its JSON.
        self.prompt_json = _Encoded(lambda pk: self.encode(self.prompt(*prompts[pk][:2])))
        self.answer_json = _Encoded(lambda pk: self.encode(self.answer(texts[pk])))
        self.quoted = _Encoded(_quote)
        self._name_json = _quote(name)
        self._pair_tails: dict[tuple[Any, ...], str] = {}

    def prompt(self, text: str, messages: Any) -> Any:
        if self.conversational:
            return messages or [{"role": "user", "content": text}]
        return text

    def answer(self, text: str) -> Any:
        return [{"role": "assistant", "content": text}] if self.conversational else text

    def pair(self, row: _Row, queue: str) -> str:
        """The TRL record of ``row`` in queue ``queue``."""
        # Everything after the texts, keyed by its values: a big snapshot's rows share a
        # few dozen such tails (gaps, scores and agreements take few values).
        key = (
            row.rank_gap,
            row.score_diff,
            row.score_chosen,
            row.score_rejected,
            row.agreement,
            row.both_bad,
            row.votes,
            row.annotator,
            queue,
        )
        tail = self._pair_tails.get(key)
        if tail is None:
            tail = self._pair_tail(*key)
            # 0.0 and -0.0 are equal keys with different JSON: zeros are never kept.
            if 0 not in key[:5]:
                self._pair_tails[key] = tail
        answers = self.answer_json
        return (
            f'{{"prompt": {self.prompt_json[row.prompt_id]}, '
            f'"chosen": {answers[row.chosen_id]}, "rejected": {answers[row.rejected_id]}, {tail}'
        )

    def _pair_tail(
        self,
        rank_gap: float,
        score_diff: float | None,
        score_chosen: float | None,
        score_rejected: float | None,
        agreement: float,
        both_bad: bool,
        votes: int,
        annotator: str,
        queue: str,
    ) -> str:
        gap = _number(rank_gap)
        return (
            f'"margin": {gap}, "rank_gap": {gap}, "score_diff": {_number(score_diff)}, '
            f'"score_chosen": {_number(score_chosen)}, '
            f'"score_rejected": {_number(score_rejected)}, '
            f'"both_bad": {"true" if both_bad else "false"}, "votes": {votes}, '
            f'"agreement": {_number(agreement)}, "annotator": {self.quoted[annotator]}, '
            f'"queue": {self.quoted[queue]}, "snapshot": {self._name_json}}}'
        )

    def single(self, row: _Single, queue: str) -> str:
        """TRL's unpaired preference record of ``row`` (``prompt``, ``completion``,
        ``label``: what ``KTOTrainer`` reads) with its score, votes, agreement and
        provenance."""
        return (
            f'{{"prompt": {self.prompt_json[row.prompt_id]}, '
            f'"completion": {self.answer_json[row.completion_id]}, '
            f'"label": {"true" if row.label else "false"}, "score": {_number(row.score)}, '
            f'"votes": {row.votes}, "agreement": {_number(row.agreement)}, '
            f'"annotator": {self.quoted[row.annotator]}, "queue": {self.quoted[queue]}, '
            f'"snapshot": {self._name_json}}}'
        )

    def listwise(
        self,
        *,
        prompt_id: int,
        completion_ids: Sequence[int],
        ranks_json: str,
        scores_json: str,
        both_bad: bool,
        votes: int,
        annotator: str,
        queue: str,
    ) -> str:
        """The listwise record: a prompt's completions best first with their ranks and
        scores (``ranks_json`` and ``scores_json``: :func:`_json_list` of them)."""
        completions = ", ".join([self.answer_json[c] for c in completion_ids])
        return (
            f'{{"prompt": {self.prompt_json[prompt_id]}, "completions": [{completions}], '
            f'"ranks": {ranks_json}, "scores": {scores_json}, '
            f'"both_bad": {"true" if both_bad else "false"}, "votes": {votes}, '
            f'"annotator": {self.quoted[annotator]}, "queue": {self.quoted[queue]}, '
            f'"snapshot": {self._name_json}}}'
        )


def _number(value: float | None) -> str:
    """A finite number (gaps, scores and agreements always are) as the encoder writes it."""
    return "null" if value is None else float.__repr__(float(value))


def _json_list(values: Sequence[float | int | None]) -> str:
    """A list of numbers as the standard encoder writes it (ints as ints, floats as floats)."""
    return (
        "["
        + ", ".join(
            [
                "null" if v is None else int.__repr__(v) if type(v) is int else _number(v)
                for v in values
            ]
        )
        + "]"
    )


def _int_list(values: Iterable[int]) -> str:
    """A list of ints (ids, ranks) as the standard encoder writes it."""
    return "[" + ", ".join(map(int.__repr__, values)) + "]"


_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _copeland(rows: Sequence[_Row]) -> list[tuple[int, int]]:
    """(completion id, rank) best first from a group's pairs: wins minus losses (Copeland),
    equal scores share a rank (dense: 1, 2, 2, 3). On a full ranking this is the ranking."""
    score: dict[int, int] = {}
    get = score.get
    for r in rows:
        if r.is_tie:
            score.setdefault(r.chosen_id, 0)
            score.setdefault(r.rejected_id, 0)
        else:
            score[r.chosen_id] = get(r.chosen_id, 0) + 1
            score[r.rejected_id] = get(r.rejected_id, 0) - 1
    ranks: list[tuple[int, int]] = []
    rank = 0
    previous: int | None = None
    for c, points in sorted(score.items(), key=lambda item: (-item[1], item[0])):
        if points != previous:
            rank += 1
            previous = points
        ranks.append((c, rank))
    return ranks


@dataclass(slots=True)
class _Listwise:
    prompt_id: int
    # JSON text, as the jsonb columns take it.
    completion_ids: str
    ranks: str
    scores: str
    both_bad: bool
    annotator: str
    queue_name: str
    votes: int
    split: str
    line: str


def _listwise(
    rows: Sequence[_Row], labels: dict[int, _Label], writer: _Writer, queue_names: dict[int, str]
) -> Iterator[_Listwise]:
    """Listwise records from the snapshot's own rows (so after its filters and
    aggregation): one per ranking under `all`, one per prompt otherwise; made one by one,
    as they are stored."""
    groups: dict[tuple[Any, ...], list[_Row]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    # The JSON of rank and score lists, by value: a big snapshot's repeat a lot (zeros are
    # never kept: 0.0 == -0.0, their JSON differs).
    ranks_seen: dict[tuple[int, ...], str] = {}
    scores_seen: dict[tuple[float | None, ...], str] = {}
    for (kind, key), members in groups.items():
        ranked = _copeland(members)
        first = members[0]
        if kind == "ranking":
            label = labels[key]
            scores = [label.scores.get(c) for c, _ in ranked]
            both_bad, annotator, votes = label.both_bad, label.annotator, 1
        else:
            per: dict[int, list[float]] = defaultdict(list)
            for r in members:
                if r.score_chosen is not None:
                    per[r.chosen_id].append(r.score_chosen)
                if r.score_rejected is not None:
                    per[r.rejected_id].append(r.score_rejected)
            scores = [_mean(per.get(c, [])) for c, _ in ranked]
            both_bad = 2 * sum(1 for r in members if r.both_bad) > len(members)
            annotator, votes = "", max(r.votes for r in members)
        queue = queue_names[first.queue_id]
        completion_ids = [c for c, _ in ranked]
        ranks = tuple([rank for _, rank in ranked])
        ranks_json = ranks_seen.get(ranks)
        if ranks_json is None:
            ranks_json = ranks_seen[ranks] = _int_list(ranks)
        scores_key = tuple(scores)
        scores_json = scores_seen.get(scores_key)
        if scores_json is None:
            scores_json = _json_list(scores)
            if 0 not in scores_key:
                scores_seen[scores_key] = scores_json
        yield _Listwise(
            prompt_id=first.prompt_id,
            completion_ids=_int_list(completion_ids),
            ranks=ranks_json,
            scores=scores_json,
            both_bad=both_bad,
            annotator=annotator,
            queue_name=queue,
            votes=votes,
            split=first.split,
            line=writer.listwise(
                prompt_id=first.prompt_id,
                completion_ids=completion_ids,
                ranks_json=ranks_json,
                scores_json=scores_json,
                both_bad=both_bad,
                votes=votes,
                annotator=annotator,
                queue=queue,
            ),
        )


def _demonstrations(
    spec: SnapshotFilter,
    writer: _Writer,
    seed: int,
    eval_fraction: float,
    *,
    rejected: Container[tuple[int, int]] = (),
) -> tuple[list[int], list[SnapshotDemonstration]]:
    """The ids and frozen copies of the demonstrations written in the snapshot's queues,
    under the same filter as the labels (dates, annotators, AI, the excluded flags of the
    label they came with). Unsaved."""
    demos = _within(
        Demonstration.objects.filter(task__queue_id__in=spec.queues), spec, date_field="created_at"
    ).order_by("id")
    flagged = (
        {
            (task_id, annotator_id)
            for task_id, annotator_id, flags in Ranking.objects.filter(
                task__queue_id__in=spec.queues
            ).values_list("task_id", "annotator_id", "flags")
            if _excluded(flags, spec)
        }
        if spec.exclude_flags
        else set()
    )
    rows = list(
        demos.values_list(
            "task_id", "annotator_id", "annotator__username", "text", "prompt_id", "id"
        )
    )
    prompts = _prompts(r[4] for r in rows)
    out: list[SnapshotDemonstration] = []
    ids: list[int] = []
    for task_id, annotator_id, who, text, prompt_id, pk in rows:
        if (task_id, annotator_id) in flagged or (task_id, annotator_id) in rejected:
            continue
        ids.append(pk)
        prompt_text, messages, key = prompts[prompt_id]
        line = writer.encode(
            {
                "messages": [
                    *(messages or [{"role": "user", "content": prompt_text}]),
                    {"role": "assistant", "content": text},
                ],
                "annotator": who,
                "snapshot": writer.name,
            }
        )
        out.append(
            SnapshotDemonstration(
                prompt_id=prompt_id,
                text=text,
                annotator=who,
                split=snapshot_split_of(key, seed, eval_fraction),
                line=line,
            )
        )
    return ids, out


# PostgreSQL column types (as Django declares them) -> the binary COPY format's.
_BINARY_COPY_TYPES = {
    "bigint": "int8",
    "integer": "int4",
    "double precision": "float8",
    "boolean": "bool",
    "text": "text",
    "varchar": "text",
}


def _binary_copy_types(model: Any, columns: Sequence[str]) -> list[str] | None:
    """The binary COPY types of ``columns``, or None if one has no plain binary form."""
    types = []
    for column in columns:
        db_type = model._meta.get_field(column).db_type(connection)
        binary = _BINARY_COPY_TYPES.get(db_type.split("(")[0])
        if binary is None:
            return None
        types.append(binary)
    return types


def _insert(model: Any, columns: Sequence[str], values: Iterable[tuple[Any, ...]]) -> None:
    """Insert rows of plain values (JSON columns as JSON text): by COPY on PostgreSQL (the
    ORM's bulk insert spends most of a big snapshot's build adapting parameters), else in
    batched INSERTs. COPY is binary when every column has a plain binary form (numbers,
    booleans, text): the same values, without the server parsing and unescaping text (a
    big snapshot's pair rows)."""
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        names = ", ".join(f'"{c}"' for c in columns)
        types = _binary_copy_types(model, columns)
        sql = f'COPY "{table}" ({names}) FROM STDIN' + (" (FORMAT BINARY)" if types else "")
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            with cursor.copy(sql) as copy:
                if types:
                    copy.set_types(types)
                for row in values:
                    copy.write_row(row)
        return
    batch: list[tuple[Any, ...]] = []
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)

    def flush() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{table}" ({names}) VALUES ' + ", ".join([placeholders] * len(batch)),
                [v for row in batch for v in row],
            )

    # SQLite allows at most 32766 parameters per statement.
    size = max(1, 30000 // len(columns))
    for row in values:
        batch.append(row)
        if len(batch) >= size:
            flush()
            batch = []
    if batch:
        flush()


_PAIR_COLUMNS = (
    "snapshot_id",
    "prompt_id",
    "chosen_id",
    "rejected_id",
    "is_tie",
    "margin",
    "rank_gap",
    "score_diff",
    "score_chosen",
    "score_rejected",
    "both_bad",
    "annotator",
    "queue_id",
    "votes",
    "agreement",
    "split",
    "line",
)


def _pair_values(
    snapshot_id: int,
    rows: Iterable[_Row],
    splits: dict[int, str],
    writer: _Writer,
    queue_names: dict[int, str],
    digest: LinesDigest,
) -> Iterator[tuple[Any, ...]]:
    """The pair rows' column values (``_PAIR_COLUMNS``), each row's line written and hashed
    on the way (a tie's line is stored but not exported, so not hashed); sets their split."""
    for r in rows:
        split = r.split = splits[r.prompt_id]
        line = writer.pair(r, queue_names[r.queue_id])
        if not r.is_tie:
            digest.add(line)
        yield (
            snapshot_id,
            r.prompt_id,
            r.chosen_id,
            r.rejected_id,
            r.is_tie,
            r.rank_gap,
            r.rank_gap,
            r.score_diff,
            r.score_chosen,
            r.score_rejected,
            r.both_bad,
            r.annotator,
            r.queue_id,
            r.votes,
            r.agreement,
            split,
            line,
        )


_LISTWISE_COLUMNS = (
    "snapshot_id",
    "prompt_id",
    "completion_ids",
    "ranks",
    "scores",
    "both_bad",
    "annotator",
    "queue_name",
    "votes",
    "split",
    "line",
)


def _listwise_values(
    snapshot_id: int, records: Iterable[_Listwise], digest: LinesDigest
) -> Iterator[tuple[Any, ...]]:
    """The listwise records' column values (``_LISTWISE_COLUMNS``), their lines hashed."""
    for x in records:
        digest.add(x.line)
        yield (
            snapshot_id,
            x.prompt_id,
            x.completion_ids,
            x.ranks,
            x.scores,
            x.both_bad,
            x.annotator,
            x.queue_name,
            x.votes,
            x.split,
            x.line,
        )


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cycle collector off for the duration (back on after, if it was on).

    A build allocates an object or more per vote, row and line and frees none until the
    end, so the collector would traverse the whole growing heap again and again: about a
    third of a big build's time in Python, for nothing, since the build's objects form no
    cycles (reference counting frees them). Process-wide: a concurrent build only runs
    with the collector on again sooner.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_cyclic_gc_paused()
@transaction.atomic
def snapshot_build(
    *,
    name: str,
    spec: SnapshotFilter,
    aggregation: str = DatasetSnapshot.Aggregation.ALL,
    ties: str = DatasetSnapshot.Ties.DROP,
    eval_fraction: float = 0.1,
    seed: int = 0,
    description: str = "",
    user: User | None = None,
) -> DatasetSnapshot:
    """Freeze the labels that ``spec`` selects into a new snapshot, with every export.

    ``aggregation``: ``all`` keeps every comparison; ``majority`` keeps one row per prompt
    and pair in the majority direction and drops contested pairs; ``mean-margin`` orients
    each pair by the mean signed rank gap of its votes. Ties are dropped or kept; whole
    pairs whose agreement is below ``spec.min_agreement`` are dropped. Single-answer labels
    (good/bad) are aggregated per answer by the same rule and agreement threshold
    (:func:`_singles`) and frozen as unpaired records. The listwise
    records come from the rows that remain; the demonstrations follow the same filter.
    Every exported line (texts, names and metadata included) is stored with the snapshot,
    and ``content_hash`` is the sha256 of all of them. Returns the snapshot.
    """
    name = name.strip()
    if not name:
        raise SnapshotError("the snapshot needs a name")
    if DatasetSnapshot.objects.filter(name=name).exists():
        raise SnapshotError(f"a snapshot named {name!r} already exists")
    if aggregation not in DatasetSnapshot.Aggregation.values:
        raise SnapshotError(f"unknown aggregation {aggregation!r}")
    if ties not in DatasetSnapshot.Ties.values:
        raise SnapshotError(f"ties must be drop or keep, not {ties!r}")
    if not 0 <= eval_fraction < 1:
        raise SnapshotError("the held-out fraction must be in [0, 1)")
    if not 0 <= spec.min_agreement <= 1:
        raise SnapshotError("minimum agreement must be in [0, 1]")
    if spec.both_bad not in BOTH_BAD_CHOICES:
        raise SnapshotError("both_bad must be keep, drop or only")
    if not spec.queues:
        raise SnapshotError("choose at least one labeling queue")
    queue_names = dict(LabelingQueue.objects.filter(pk__in=spec.queues).values_list("pk", "name"))
    if len(queue_names) != len(set(spec.queues)):
        raise SnapshotError("unknown labeling queue")

    rejected = _rejected(spec)
    labels = _labels(spec, rejected=rejected)
    rows = _aggregate(_votes_by_pair(labels, spec), aggregation)
    rows = [
        r
        for r in rows
        if r.agreement >= spec.min_agreement and (ties == DatasetSnapshot.Ties.KEEP or not r.is_tie)
    ]
    singles = [s for s in _singles(labels, aggregation) if s.agreement >= spec.min_agreement]
    if not rows and not singles:
        raise SnapshotError("no comparison matches this filter")
    prompts = _queue_prompts(spec.queues)
    texts = _queue_completion_texts(spec.queues)
    prompt_ids = {r.prompt_id for r in rows} | {s.prompt_id for s in singles}
    writer = _Writer(
        name=name,
        conversational=any(prompts[p][1] for p in prompt_ids),
        prompts=prompts,
        texts=texts,
    )
    splits = {p: snapshot_split_of(prompts[p][2], seed, eval_fraction) for p in prompt_ids}
    for x in singles:
        x.split = splits[x.prompt_id]
        x.line = writer.single(x, queue_names[x.queue_id])
    demo_ids, demos = _demonstrations(
        spec, writer, seed, eval_fraction, rejected=set(rejected.values())
    )
    eval_count = sum(1 for r in rows if splits[r.prompt_id] == SnapshotRow.Split.EVAL)

    # The snapshot comes first, its content hash last: its pair and listwise rows stream in
    # as their lines are written and hashed (the server stores each batch while the next is
    # made), never all held at once. One transaction: nobody sees it before the hash.
    snapshot = DatasetSnapshot.objects.create(
        name=name,
        description=description,
        filters=spec.as_json(),
        aggregation=aggregation,
        ties=ties,
        eval_fraction=eval_fraction,
        seed=seed,
        content_hash="",
        hash_scheme=2,
        row_count=len(rows),
        train_count=len(rows) - eval_count,
        eval_count=eval_count,
        prompt_count=len(prompt_ids),
        stats={
            "ties": sum(1 for r in rows if r.is_tie),
            "both_bad": sum(1 for r in rows if r.both_bad),
            # Current labels of these queues left out because a lead rejected them.
            "rejected_labels": len(rejected),
            "mean_agreement": sum(r.agreement for r in rows) / len(rows) if rows else 0.0,
            # Single-answer labels frozen as unpaired records, and how many say good.
            "single_answers": len(singles),
            "single_good": sum(1 for x in singles if x.label),
            "annotators": sorted({r.annotator for r in rows if r.annotator}),
            "built_at": timezone.now().isoformat(),
        },
        # Lineage only (the current labels and demonstrations behind the snapshot at build;
        # those rows may change later, the frozen records below never do).
        ranking_ids=sorted(labels),
        demonstration_ids=demo_ids,
        created_by=user,
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The commit does not wait for the server to flush the snapshot's write-ahead
            # log to disk (tens of MB for a big one). Safe: a server crash right after the
            # commit could lose this latest transaction (the snapshot is then simply not
            # there, and the build can run again), never leave a part of it or break
            # consistency. SET LOCAL: this transaction only.
            cursor.execute("SET LOCAL synchronous_commit = off")
    digest = LinesDigest()
    digest.section("trl")
    _insert(
        SnapshotRow,
        _PAIR_COLUMNS,
        _pair_values(snapshot.pk, rows, splits, writer, queue_names, digest),
    )
    digest.section("listwise")
    _insert(
        SnapshotRanking,
        _LISTWISE_COLUMNS,
        _listwise_values(snapshot.pk, _listwise(rows, labels, writer, queue_names), digest),
    )
    digest.section("sft")
    for d in demos:
        d.snapshot = snapshot
        digest.add(d.line)
    SnapshotDemonstration.objects.bulk_create(demos, batch_size=2000)
    digest.section("unpaired", optional=True)
    for x in singles:
        digest.add(x.line)
    SnapshotSingle.objects.bulk_create(
        [
            SnapshotSingle(
                snapshot=snapshot,
                prompt_id=x.prompt_id,
                completion_id=x.completion_id,
                label=x.label,
                score=x.score,
                annotator=x.annotator,
                queue_name=queue_names[x.queue_id],
                votes=x.votes,
                agreement=x.agreement,
                split=x.split,
                line=x.line,
            )
            for x in singles
        ],
        batch_size=2000,
    )
    snapshot.content_hash = digest.hexdigest()
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(content_hash=snapshot.content_hash)
    return snapshot


def snapshot_build_from_data(
    *, data: dict[str, Any], queue_ids: Sequence[int], user: User | None
) -> DatasetSnapshot:
    """:func:`snapshot_build` from a validated form or serializer (the same field names)."""
    return snapshot_build(
        name=data["name"],
        description=data.get("description", ""),
        spec=SnapshotFilter(
            queues=list(queue_ids),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            annotators=data.get("annotators") or (),
            exclude_flags=data.get("exclude_flags") or (),
            min_agreement=data.get("min_agreement") or 0.0,
            include_ai=bool(data.get("include_ai", False)),
            both_bad=data.get("both_bad") or "keep",
        ),
        aggregation=data["aggregation"],
        ties=data["ties"],
        eval_fraction=data["eval_fraction"],
        seed=data["seed"],
        user=user,
    )
