"""Exports of a frozen dataset snapshot: TRL pairs (JSON lines, Parquet), listwise
rankings, SFT demonstrations, single-answer labels (TRL's unpaired format) and the data
card.

Every export streams the lines frozen at build (:mod:`labeling.snapshots.build`): the bytes
never change, whatever happens to labels, queue or user names afterwards, on SQLite and
PostgreSQL alike. Rows stream from a server-side cursor (COPY on PostgreSQL) in chunks.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from labeling.models import (
    DatasetSnapshot,
    SnapshotDemonstration,
    SnapshotRanking,
    SnapshotRow,
    SnapshotSingle,
)
from labeling.snapshots.build import SnapshotError
from labeling.snapshots.lines import lines_joined, snapshot_lines_digest

EXPORT_CHUNK = 2000

# The TRL record's fields, in order (snapshots with hash_scheme 1 have the first six and
# the last three only: see the 0006 migration).
TRL_FIELDS = (
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
)
_LEGACY_TRL_FIELDS = (
    "prompt",
    "chosen",
    "rejected",
    "margin",
    "score_chosen",
    "score_rejected",
    "annotator",
    "queue",
    "snapshot",
)


def snapshot_is_conversational(snapshot: DatasetSnapshot) -> bool:
    return SnapshotRow.objects.filter(snapshot=snapshot, prompt__messages__isnull=False).exists()


def _pair_rows(snapshot: DatasetSnapshot, split: str | None) -> QuerySet[SnapshotRow]:
    """The rows a TRL export holds: every non-tie pair (a tie has no chosen and rejected)."""
    rows = SnapshotRow.objects.filter(snapshot=snapshot, is_tie=False).order_by("id")
    return rows.filter(split=split) if split else rows


def _trl_jsonl_python(
    snapshot: DatasetSnapshot, split: str | None, chunk_size: int
) -> Iterator[bytes]:
    lines = _pair_rows(snapshot, split).values_list("line", flat=True)
    yield from lines_joined(lines.iterator(chunk_size=chunk_size), chunk_size)


_COPY_SQL = (
    "COPY (SELECT line FROM labeling_snapshotrow WHERE snapshot_id = {snapshot} "
    "AND NOT is_tie {split} ORDER BY id) TO STDOUT"
)


def _trl_jsonl_postgresql(
    snapshot: DatasetSnapshot, split: str | None, chunk_size: int
) -> Iterator[bytes]:
    """COPY streams the frozen lines as fast as PostgreSQL sends them."""
    split_sql = f"AND split = '{split}'" if split in SnapshotRow.Split.values else ""
    sql = _COPY_SQL.format(snapshot=int(snapshot.pk), split=split_sql)
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        copy.set_types(["text"])
        yield from lines_joined((line for (line,) in copy.rows()), chunk_size)


def snapshot_export_trl_jsonl(
    snapshot: DatasetSnapshot, *, split: str | None = None, chunk_size: int = EXPORT_CHUNK
) -> Iterator[bytes]:
    """JSON lines in TRL's preference format, streamed with bounded memory: the lines
    frozen at build (COPY on PostgreSQL, a server-side cursor elsewhere; the same bytes)."""
    if connection.vendor == "postgresql":
        yield from _trl_jsonl_postgresql(snapshot, split, chunk_size)
    else:
        yield from _trl_jsonl_python(snapshot, split, chunk_size)


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
    """Write the TRL records (the frozen lines, parsed) as Parquet to ``out`` (a path or a
    binary file), one row group per chunk so memory stays bounded. Returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    text = message if snapshot_is_conversational(snapshot) else pa.string()
    types = {
        "prompt": text,
        "chosen": text,
        "rejected": text,
        "both_bad": pa.bool_(),
        "votes": pa.int64(),
        "annotator": pa.string(),
        "queue": pa.string(),
        "snapshot": pa.string(),
    }
    fields = TRL_FIELDS if snapshot.hash_scheme >= 2 else _LEGACY_TRL_FIELDS
    schema = pa.schema([(f, types.get(f, pa.float64())) for f in fields])
    written = 0
    lines = _pair_rows(snapshot, split).values_list("line", flat=True)
    with pq.ParquetWriter(out, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for line in lines.iterator(chunk_size=chunk_size):
            chunk.append(json.loads(line))
            if len(chunk) >= chunk_size:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                written += len(chunk)
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            written += len(chunk)
    return written


def snapshot_export_rankings_jsonl(
    snapshot: DatasetSnapshot, *, chunk_size: int = EXPORT_CHUNK
) -> Iterator[bytes]:
    """Listwise data for ranking losses, frozen at build from the snapshot's rows (after
    its filters and aggregation): completions best first, their ranks (equal ranks are
    ties), scores, a ``both_bad`` flag, votes, the annotator (under `all`) and the queue."""
    lines = SnapshotRanking.objects.filter(snapshot=snapshot).order_by("id")
    yield from lines_joined(
        lines.values_list("line", flat=True).iterator(chunk_size=chunk_size), chunk_size
    )


def snapshot_export_sft_jsonl(snapshot: DatasetSnapshot) -> Iterator[bytes]:
    """Demonstrations as SFT data: ``messages`` = the prompt's turns + the ideal answer."""
    lines = SnapshotDemonstration.objects.filter(snapshot=snapshot).order_by("id")
    yield from lines_joined(
        lines.values_list("line", flat=True).iterator(chunk_size=EXPORT_CHUNK), EXPORT_CHUNK
    )


def snapshot_export_unpaired_jsonl(
    snapshot: DatasetSnapshot, *, split: str | None = None, chunk_size: int = EXPORT_CHUNK
) -> Iterator[bytes]:
    """The single-answer labels in TRL's unpaired preference format (``prompt``,
    ``completion``, ``label``: true for good; what ``KTOTrainer`` takes), with ``score``
    (1-7 or null), ``votes``, ``agreement``, ``annotator``, ``queue`` and ``snapshot``."""
    yield from lines_joined(
        snapshot_singles(snapshot=snapshot, split=split)
        .values_list("line", flat=True)
        .iterator(chunk_size=chunk_size),
        chunk_size,
    )


def snapshot_singles(
    *, snapshot: DatasetSnapshot, split: str | None = None
) -> QuerySet[SnapshotSingle]:
    """The snapshot's frozen single-answer labels (prompt, completion, label, score,
    split), in build order, for exports and training readers."""
    singles = SnapshotSingle.objects.filter(snapshot=snapshot).order_by("id")
    return singles.filter(split=split) if split else singles


def snapshot_rankings(*, snapshot: DatasetSnapshot) -> QuerySet[SnapshotRanking]:
    """The snapshot's frozen listwise records (prompt, completion_ids best first, ranks,
    scores, both_bad, split), for training readers."""
    return SnapshotRanking.objects.filter(snapshot=snapshot).order_by("id")


def snapshot_export_digest(snapshot: DatasetSnapshot) -> str:
    """The sha256 of every export's bytes, recomputed from the exports themselves: equal to
    ``content_hash`` for every snapshot with ``hash_scheme`` 2."""

    def lines(chunks: Iterable[bytes]) -> Iterator[str]:
        # Split on newlines only: str.splitlines would also split at U+2028 and friends,
        # which JSON leaves unescaped inside strings.
        data = b"".join(chunks).decode("utf-8")
        yield from data.split("\n")[:-1] if data else []

    return snapshot_lines_digest(
        lines(snapshot_export_trl_jsonl(snapshot)),
        lines(snapshot_export_rankings_jsonl(snapshot)),
        lines(snapshot_export_sft_jsonl(snapshot)),
        lines(snapshot_export_unpaired_jsonl(snapshot)),
    )


def snapshot_data_card(snapshot: DatasetSnapshot) -> str:
    """README.md for an export: counts, agreement, filters, aggregation, hash and date."""
    filters = json.dumps(snapshot.filters, indent=2, ensure_ascii=False)
    stats = snapshot.stats or {}
    listwise = SnapshotRanking.objects.filter(snapshot=snapshot).count()
    demos = SnapshotDemonstration.objects.filter(snapshot=snapshot).count()
    # Only snapshots holding single-answer labels describe them; older cards keep their bytes.
    singles = stats.get("single_answers", 0)
    singles_line = (
        f"\n| single answers (KTO) | {singles} ({stats.get('single_good', 0)} good) |"
        if singles
        else ""
    )
    singles_format = (
        "\nSingle-answer labels (`unpaired.jsonl`) are in TRL's unpaired preference format: "
        "`prompt`, `completion`, `label` (true: good), plus `score` (1–7 or null), `votes`, "
        "`agreement`, `annotator`, `queue`, `snapshot`; `KTOTrainer` takes them as is.\n"
        if singles
        else ""
    )
    covers = (
        "every export (TRL pairs, listwise, SFT, unpaired)"
        if stats.get("single_answers")
        else "every export (TRL pairs, listwise, SFT)"
        if snapshot.hash_scheme >= 2
        else "the pair rows only (built before frozen exports)"
    )
    # Only snapshots built since review existed count rejected labels; older cards keep
    # their exact bytes.
    rejected_line = (
        f"\n| labels rejected in review, left out | {stats['rejected_labels']} |"
        if "rejected_labels" in stats
        else ""
    )
    return f"""# {snapshot.name}

Preference data exported from Preflab.

| | |
|---|---|
| content hash (sha256) | `{snapshot.content_hash}`, over {covers} |
| built | {snapshot.created_at.isoformat()} |
| rows | {snapshot.row_count} ({snapshot.train_count} train, {snapshot.eval_count} eval) |
| prompts | {snapshot.prompt_count} |
| ties | {stats.get("ties", 0)} ({snapshot.ties}) |
| both bad | {stats.get("both_bad", 0)} |{rejected_line}
| aggregation | {snapshot.aggregation} |
| mean agreement | {stats.get("mean_agreement", 0):.3f} |
| held-out split | by prompt, {snapshot.eval_fraction:.0%}, seed {snapshot.seed} |
| rankings (listwise) | {listwise} |
| demonstrations (SFT) | {demos} |{singles_line}

Filters:

```json
{filters}
```

Format: JSON lines in TRL's preference format: `prompt`, `chosen`, `rejected` (strings, or
lists of `{{role, content}}` messages when the prompt is a conversation), plus:

- `margin`: how much better `chosen` is, in rank steps; this is the field trainers use as
  the margin (never negative; 0 only on ties, which TRL pairs leave out). Equal to
  `rank_gap`; aggregated rows carry the mean gap of the agreeing votes (`majority`) or the
  absolute mean signed gap (`mean-margin`).
- `score_diff`: `score_chosen - score_rejected` on the 1–7 scale when both were scored,
  else null: a separate unit, never mixed into `margin`.
- `score_chosen`, `score_rejected` (means over the agreeing votes when aggregated),
  `both_bad` (the annotator marked every answer bad), `votes`, `agreement` (the share of
  the pair's votes in this direction), `annotator`, `queue`, `snapshot`.

Load with `datasets.load_dataset("json", data_files=...)`; `DPOTrainer` and `RewardTrainer`
take it as is. Every export of this snapshot was frozen when it was built: re-exporting
gives the same bytes, and `content_hash` is their sha256.
{singles_format}{snapshot.description}
"""
