"""Frozen dataset snapshots of the comparison store, and their exports.

A snapshot is built once from a filter and an aggregation rule; its rows and content hash
never change afterwards, so a training run or an export can always say exactly what data
it used. Exports stream rows from a server-side cursor in chunks.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from generation.models import Completion
from labeling.models import (
    AI_LABELER_GROUP,
    Comparison,
    DatasetSnapshot,
    Demonstration,
    LabelingQueue,
    Ranking,
    SnapshotRow,
)

EXPORT_CHUNK = 2000
_JSON = json.JSONEncoder(ensure_ascii=False)


class SnapshotError(ValueError):
    """A snapshot request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class SnapshotFilter:
    """Which comparisons go in. Empty fields mean no restriction."""

    queues: Sequence[int]
    date_from: datetime | None = None
    date_to: datetime | None = None
    annotators: Sequence[str] = ()
    exclude_flags: Sequence[str] = ()
    # Pairs whose annotators agree less than this (share of votes) are left out.
    min_agreement: float = 0.0
    # Comparisons by AI labelers (the ai-labeler group) go in only when asked for.
    include_ai: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "queues": list(self.queues),
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "annotators": list(self.annotators),
            "exclude_flags": list(self.exclude_flags),
            "min_agreement": self.min_agreement,
            "include_ai": self.include_ai,
        }


@dataclass
class _Vote:
    comparison: Comparison
    # +1: first of the unordered pair preferred, -1: second, 0: tie.
    direction: int
    signed_margin: float


@dataclass
class _Row:
    prompt_id: int
    prompt_hash: str
    chosen_id: int
    rejected_id: int
    is_tie: bool
    margin: float
    score_chosen: float | None
    score_rejected: float | None
    annotator: str
    queue_id: int
    votes: int
    agreement: float
    split: str = SnapshotRow.Split.TRAIN
    texts: tuple[str, str] = field(default=("", ""))


def _scores(comparison: Comparison) -> tuple[float | None, float | None]:
    scores = comparison.ranking.scores or {}
    chosen = scores.get(str(comparison.chosen_id))
    rejected = scores.get(str(comparison.rejected_id))
    return (
        float(chosen) if chosen is not None else None,
        float(rejected) if rejected is not None else None,
    )


def _within(qs: QuerySet[Any], spec: SnapshotFilter) -> QuerySet[Any]:
    """The date and annotator parts of the filter (AI labelers left out unless asked for),
    for comparisons and demonstrations."""
    if spec.date_from:
        qs = qs.filter(created_at__gte=spec.date_from)
    if spec.date_to:
        qs = qs.filter(created_at__lt=spec.date_to)
    if spec.annotators:
        qs = qs.filter(annotator__username__in=list(spec.annotators))
    if not spec.include_ai:
        qs = qs.exclude(annotator__groups__name=AI_LABELER_GROUP)
    return qs


def _comparisons(spec: SnapshotFilter) -> list[Comparison]:
    qs = _within(Comparison.objects.filter(queue_id__in=spec.queues), spec).select_related(
        "ranking", "annotator", "prompt", "chosen", "rejected"
    )
    excluded = set(spec.exclude_flags)
    return [
        c for c in qs.order_by("id") if not (excluded and excluded & set(c.ranking.flags or []))
    ]


def _votes_by_pair(comparisons: Iterable[Comparison]) -> dict[tuple[int, int, int], list[_Vote]]:
    """Votes on each unordered pair (prompt, low id, high id), each with its direction."""
    pairs: dict[tuple[int, int, int], list[_Vote]] = defaultdict(list)
    for c in comparisons:
        low, high = sorted((c.chosen_id, c.rejected_id))
        if c.is_tie:
            direction = 0
        else:
            direction = 1 if c.chosen_id == low else -1
        pairs[(c.prompt_id, low, high)].append(_Vote(c, direction, direction * abs(c.margin)))
    return pairs


def _row(
    c: Comparison,
    *,
    chosen_first: bool,
    tie: bool,
    margin: float,
    votes: int,
    agreement: float,
    annotator: str,
) -> _Row:
    chosen, rejected = (c.chosen, c.rejected) if chosen_first else (c.rejected, c.chosen)
    score_c, score_r = _scores(c)
    if not chosen_first:
        score_c, score_r = score_r, score_c
    return _Row(
        prompt_id=c.prompt_id,
        prompt_hash=c.prompt.content_hash,
        chosen_id=chosen.pk,
        rejected_id=rejected.pk,
        is_tie=tie,
        margin=margin,
        score_chosen=score_c,
        score_rejected=score_r,
        annotator=annotator,
        queue_id=c.queue_id,
        votes=votes,
        agreement=agreement,
        texts=(chosen.text, rejected.text),
    )


def _demonstration_ids(spec: SnapshotFilter) -> list[int]:
    demos = _within(Demonstration.objects.filter(task__queue_id__in=spec.queues), spec)
    return sorted(demos.values_list("id", flat=True))


def _aggregate(pairs: dict[tuple[int, int, int], list[_Vote]], rule: str) -> list[_Row]:
    rows: list[_Row] = []
    for (_prompt, low, _high), votes in pairs.items():
        counts = {d: sum(1 for v in votes if v.direction == d) for d in (1, -1, 0)}
        if rule == DatasetSnapshot.Aggregation.ALL:
            for vote in votes:
                c = vote.comparison
                same = counts[vote.direction] / len(votes)
                rows.append(
                    _row(
                        c,
                        chosen_first=True,
                        tie=c.is_tie,
                        margin=c.margin,
                        votes=1,
                        agreement=same,
                        annotator=c.annotator.get_username(),
                    )
                )
            continue
        if rule == DatasetSnapshot.Aggregation.MAJORITY:
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            (top, top_count), (_, second_count) = ranked[0], ranked[1]
            if top_count == second_count:
                continue  # contested: no majority
            direction = top
            agreeing = [v for v in votes if v.direction == direction]
            margin = sum(abs(v.signed_margin) for v in agreeing) / len(agreeing)
            agreement = top_count / len(votes)
        else:  # mean-margin
            mean = sum(v.signed_margin for v in votes) / len(votes)
            direction = (mean > 0) - (mean < 0)
            margin = abs(mean)
            agreement = counts[direction] / len(votes)
        first = votes[0].comparison
        # Orient the row so that "chosen" is the preferred completion (low id on a tie).
        chosen_first = (first.chosen_id == low) == (direction >= 0)
        rows.append(
            _row(
                first,
                chosen_first=chosen_first,
                tie=direction == 0,
                margin=margin,
                votes=len(votes),
                agreement=agreement,
                annotator="",
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


_split_of = snapshot_split_of


def _content_hash(rows: Sequence[_Row]) -> str:
    """sha256 over the canonical rows: the texts, not database ids, in a fixed order."""
    lines = sorted(
        json.dumps(
            [
                r.prompt_hash,
                r.texts[0],
                r.texts[1],
                r.is_tie,
                round(r.margin, 6),
                r.split,
                r.annotator,
                r.votes,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for r in rows
    )
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


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
    user: AbstractBaseUser | None = None,
) -> DatasetSnapshot:
    """Freeze the comparisons that ``spec`` selects into a new snapshot.

    ``aggregation``: ``all`` keeps every comparison; ``majority`` keeps one row per prompt
    and pair in the majority direction and drops contested pairs; ``mean-margin`` orients
    each pair by the mean signed margin of its votes. Ties are dropped or kept; pairs whose
    agreement is below ``spec.min_agreement`` are dropped. Returns the snapshot.
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
    if not spec.queues:
        raise SnapshotError("choose at least one labeling queue")
    if LabelingQueue.objects.filter(pk__in=spec.queues).count() != len(set(spec.queues)):
        raise SnapshotError("unknown labeling queue")

    comparisons = _comparisons(spec)
    rows = _aggregate(_votes_by_pair(comparisons), aggregation)
    rows = [
        r
        for r in rows
        if r.agreement >= spec.min_agreement and (ties == DatasetSnapshot.Ties.KEEP or not r.is_tie)
    ]
    for r in rows:
        r.split = _split_of(r.prompt_hash, seed, eval_fraction)
    if not rows:
        raise SnapshotError("no comparison matches this filter")

    snapshot = DatasetSnapshot.objects.create(
        name=name,
        description=description,
        filters=spec.as_json(),
        aggregation=aggregation,
        ties=ties,
        eval_fraction=eval_fraction,
        seed=seed,
        content_hash=_content_hash(rows),
        row_count=len(rows),
        train_count=sum(1 for r in rows if r.split == SnapshotRow.Split.TRAIN),
        eval_count=sum(1 for r in rows if r.split == SnapshotRow.Split.EVAL),
        prompt_count=len({r.prompt_id for r in rows}),
        stats={
            "ties": sum(1 for r in rows if r.is_tie),
            "mean_agreement": sum(r.agreement for r in rows) / len(rows),
            "annotators": sorted({r.annotator for r in rows if r.annotator}),
            "built_at": timezone.now().isoformat(),
        },
        ranking_ids=sorted({c.ranking_id for c in comparisons}),
        demonstration_ids=_demonstration_ids(spec),
        created_by=user,
    )
    SnapshotRow.objects.bulk_create(
        [
            SnapshotRow(
                snapshot=snapshot,
                prompt_id=r.prompt_id,
                chosen_id=r.chosen_id,
                rejected_id=r.rejected_id,
                is_tie=r.is_tie,
                margin=r.margin,
                score_chosen=r.score_chosen,
                score_rejected=r.score_rejected,
                annotator=r.annotator,
                queue_id=r.queue_id,
                votes=r.votes,
                agreement=r.agreement,
                split=r.split,
            )
            for r in rows
        ],
        batch_size=2000,
    )
    return snapshot


def snapshot_build_from_data(
    *, data: dict[str, Any], queue_ids: Sequence[int], user: AbstractBaseUser | None
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
        ),
        aggregation=data["aggregation"],
        ties=data["ties"],
        eval_fraction=data["eval_fraction"],
        seed=data["seed"],
        user=user,
    )


# --- exports ------------------------------------------------------------------------------------


_EXPORT_COLUMNS = (
    "prompt__text",
    "prompt__messages",
    "chosen__text",
    "rejected__text",
    "margin",
    "score_chosen",
    "score_rejected",
    "annotator",
    "queue__name",
)


def snapshot_is_conversational(snapshot: DatasetSnapshot) -> bool:
    return SnapshotRow.objects.filter(snapshot=snapshot, prompt__messages__isnull=False).exists()


def _record_chunks(
    snapshot: DatasetSnapshot, split: str | None, chunk_size: int
) -> Iterator[list[dict[str, Any]]]:
    """TRL preference records of a snapshot, in chunks, from a server-side cursor.

    Plain strings, or message lists for conversations. One snapshot is exported in one
    form: if any prompt is a conversation, plain prompts become a single user message, so
    every row has the same column types (a mix would not load as one ``datasets`` table).
    Ties have no place in a chosen/rejected pair and are left out. Rows are read as tuples,
    not model instances: the export's speed is the cost of this loop.
    """
    conversational = snapshot_is_conversational(snapshot)
    rows = SnapshotRow.objects.filter(snapshot=snapshot, is_tie=False).order_by("id")
    if split:
        rows = rows.filter(split=split)
    name = snapshot.name
    chunk: list[dict[str, Any]] = []
    for (
        text,
        messages,
        chosen,
        rejected,
        margin,
        s_chosen,
        s_rejected,
        who,
        queue,
    ) in rows.values_list(*_EXPORT_COLUMNS).iterator(chunk_size=chunk_size):
        if conversational:
            prompt: Any = messages or [{"role": "user", "content": text}]
            chosen = [{"role": "assistant", "content": chosen}]
            rejected = [{"role": "assistant", "content": rejected}]
        else:
            prompt = text
        chunk.append(
            {
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "margin": margin,
                "score_chosen": s_chosen,
                "score_rejected": s_rejected,
                "annotator": who,
                "queue": queue,
                "snapshot": name,
            }
        )
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def snapshot_export_trl_jsonl(
    snapshot: DatasetSnapshot, *, split: str | None = None, chunk_size: int = EXPORT_CHUNK
) -> Iterator[bytes]:
    """JSON lines in TRL's preference format, streamed with bounded memory.

    On PostgreSQL, COPY streams the raw columns and the lines are assembled from escaped
    strings: the same records as the Python path, several times faster.
    """
    if connection.vendor == "postgresql":
        yield from _trl_jsonl_postgresql(snapshot, split, chunk_size)
    else:
        yield from _trl_jsonl_python(snapshot, split, chunk_size)


def _trl_jsonl_python(
    snapshot: DatasetSnapshot, split: str | None, chunk_size: int
) -> Iterator[bytes]:
    encode = _JSON.encode  # one encoder: json.dumps with options builds a new one per call
    for chunk in _record_chunks(snapshot, split, chunk_size):
        yield "".join([encode(r) + "\n" for r in chunk]).encode("utf-8")


_COPY_SQL = """COPY (
SELECT p.text, p.messages::text, c.text, r.text, s.margin, s.score_chosen, s.score_rejected,
       s.annotator, q.name
FROM labeling_snapshotrow s
JOIN generation_prompt p ON p.id = s.prompt_id
JOIN generation_completion c ON c.id = s.chosen_id
JOIN generation_completion r ON r.id = s.rejected_id
JOIN labeling_labelingqueue q ON q.id = s.queue_id
WHERE s.snapshot_id = {snapshot} AND NOT s.is_tie {split}
ORDER BY s.id
) TO STDOUT"""
_COPY_TYPES = ["text", "text", "text", "text", "float8", "float8", "float8", "text", "text"]


def _trl_jsonl_postgresql(
    snapshot: DatasetSnapshot, split: str | None, chunk_size: int
) -> Iterator[bytes]:
    """COPY streams the raw columns (as fast as PostgreSQL can send them) and each line is
    assembled from C-escaped strings; the records equal those of the Python path."""
    conversational = snapshot_is_conversational(snapshot)
    quote = json.encoder.encode_basestring  # type: ignore[attr-defined]
    tail = f', "snapshot": {quote(snapshot.name)}}}\n'
    split_sql = f"AND s.split = '{split}'" if split in SnapshotRow.Split.values else ""
    sql = _COPY_SQL.format(snapshot=int(snapshot.pk), split=split_sql)
    connection.ensure_connection()
    lines: list[str] = []
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        copy.set_types(_COPY_TYPES)
        for (
            text,
            messages,
            chosen,
            rejected,
            margin,
            s_chosen,
            s_rejected,
            who,
            queue,
        ) in copy.rows():
            if conversational:
                prompt = messages or f'[{{"role": "user", "content": {quote(text)}}}]'
                chosen_json = f'[{{"role": "assistant", "content": {quote(chosen)}}}]'
                rejected_json = f'[{{"role": "assistant", "content": {quote(rejected)}}}]'
            else:
                prompt, chosen_json, rejected_json = quote(text), quote(chosen), quote(rejected)
            lines.append(
                f'{{"prompt": {prompt}, "chosen": {chosen_json}, "rejected": {rejected_json}, '
                f'"margin": {"null" if margin is None else repr(margin)}, '
                f'"score_chosen": {"null" if s_chosen is None else repr(s_chosen)}, '
                f'"score_rejected": {"null" if s_rejected is None else repr(s_rejected)}, '
                f'"annotator": {quote(who)}, "queue": {quote(queue)}' + tail
            )
            if len(lines) >= chunk_size:
                yield "".join(lines).encode("utf-8")
                lines = []
    if lines:
        yield "".join(lines).encode("utf-8")


def snapshot_split(value: str | None) -> str | None:
    """The ``split`` a download asks for: None (all rows), train or eval."""
    if not value:
        return None
    if value not in SnapshotRow.Split.values:
        raise SnapshotError("split must be train or eval")
    return value


def snapshot_parquet_file(snapshot: DatasetSnapshot, *, split: str | None = None) -> Any:
    """The Parquet export in an anonymous temporary file, rewound for sending: Parquet's
    footer comes last, so the file is written to disk in row groups first."""
    handle = tempfile.TemporaryFile()
    snapshot_export_trl_parquet(snapshot, handle, split=split)
    handle.seek(0)
    return handle


def snapshot_export_trl_parquet(
    snapshot: DatasetSnapshot, out: Any, *, split: str | None = None, chunk_size: int = EXPORT_CHUNK
) -> int:
    """Write the TRL records as Parquet to ``out`` (a path or a binary file), one row group
    per chunk so memory stays bounded. Returns the number of rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    text = message if snapshot_is_conversational(snapshot) else pa.string()
    schema = pa.schema(
        [
            ("prompt", text),
            ("chosen", text),
            ("rejected", text),
            ("margin", pa.float64()),
            ("score_chosen", pa.float64()),
            ("score_rejected", pa.float64()),
            ("annotator", pa.string()),
            ("queue", pa.string()),
            ("snapshot", pa.string()),
        ]
    )
    written = 0
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in _record_chunks(snapshot, split, chunk_size):
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            written += len(chunk)
    return written


def _as_messages(text: str, messages: list[dict[str, str]] | None) -> list[dict[str, str]]:
    return messages or [{"role": "user", "content": text}]


def snapshot_export_rankings_jsonl(
    snapshot: DatasetSnapshot, *, chunk_size: int = EXPORT_CHUNK
) -> Iterator[bytes]:
    """Listwise data for ranking losses: each ranking's completions best first, the rank of
    each (equal ranks are ties), their scores, the annotator and the queue."""
    encode = _JSON.encode
    ids = list(snapshot.ranking_ids)
    for start in range(0, len(ids), chunk_size):
        rankings = (
            Ranking.objects.filter(pk__in=ids[start : start + chunk_size])
            .select_related("task__prompt", "task__queue", "annotator")
            .order_by("id")
        )
        chunk = list(rankings)
        texts = dict(
            Completion.objects.filter(
                pk__in={c for r in chunk for group in r.order for c in group}
            ).values_list("id", "text")
        )
        lines = []
        for ranking in chunk:
            prompt = ranking.task.prompt
            flat = [(rank, c) for rank, group in enumerate(ranking.order, start=1) for c in group]
            scores = ranking.scores or {}
            lines.append(
                encode(
                    {
                        "prompt": prompt.messages or prompt.text,
                        "completions": [texts[c] for _, c in flat],
                        "ranks": [rank for rank, _ in flat],
                        "scores": [scores.get(str(c)) for _, c in flat],
                        "annotator": ranking.annotator.get_username(),
                        "queue": ranking.task.queue.name,
                        "snapshot": snapshot.name,
                    }
                )
                + "\n"
            )
        yield "".join(lines).encode("utf-8")


def snapshot_export_sft_jsonl(snapshot: DatasetSnapshot) -> Iterator[bytes]:
    """Demonstrations as SFT data: ``messages`` = the prompt's turns + the ideal answer."""
    encode = _JSON.encode
    demos = (
        Demonstration.objects.filter(pk__in=snapshot.demonstration_ids)
        .select_related("prompt", "annotator")
        .order_by("id")
    )
    for demo in demos.iterator(chunk_size=EXPORT_CHUNK):
        messages = [
            *_as_messages(demo.prompt.text, demo.prompt.messages),
            {"role": "assistant", "content": demo.text},
        ]
        yield (
            encode(
                {
                    "messages": messages,
                    "annotator": demo.annotator.get_username(),
                    "snapshot": snapshot.name,
                }
            )
            + "\n"
        ).encode("utf-8")


def snapshot_data_card(snapshot: DatasetSnapshot) -> str:
    """README.md for an export: counts, agreement, filters, aggregation, hash and date."""
    filters = json.dumps(snapshot.filters, indent=2, ensure_ascii=False)
    stats = snapshot.stats or {}
    return f"""# {snapshot.name}

Preference data exported from Preflab.

| | |
|---|---|
| content hash (sha256) | `{snapshot.content_hash}` |
| built | {snapshot.created_at.isoformat()} |
| rows | {snapshot.row_count} ({snapshot.train_count} train, {snapshot.eval_count} eval) |
| prompts | {snapshot.prompt_count} |
| ties | {stats.get("ties", 0)} ({snapshot.ties}) |
| aggregation | {snapshot.aggregation} |
| mean agreement | {stats.get("mean_agreement", 0):.3f} |
| held-out split | by prompt, {snapshot.eval_fraction:.0%}, seed {snapshot.seed} |
| rankings (listwise) | {len(snapshot.ranking_ids)} |
| demonstrations (SFT) | {len(snapshot.demonstration_ids)} |

Filters:

```json
{filters}
```

Format: JSON lines in TRL's preference format: `prompt`, `chosen`, `rejected` (strings, or
lists of `{{role, content}}` messages when the prompt is a conversation), plus `margin`,
`score_chosen`, `score_rejected`, `annotator`, `queue` and `snapshot`. Load with
`datasets.load_dataset("json", data_files=...)`; `DPOTrainer` and `RewardTrainer` take it as is.
{snapshot.description}
"""
