"""Frozen dataset snapshots of the comparison store: :mod:`.build` freezes them,
:mod:`.export` streams what was frozen; :mod:`.lines` turns lines into bytes and hashes them.

A snapshot is built once from a filter and an aggregation rule; its rows, exported lines and
content hash never change afterwards, so a training run or an export can always say exactly
what data it used. The public functions of the three are importable from here.
"""

from __future__ import annotations

from labeling.snapshots.build import (
    BOTH_BAD_CHOICES,
    SnapshotError,
    SnapshotFilter,
    snapshot_build,
    snapshot_build_from_data,
    snapshot_split_of,
)
from labeling.snapshots.export import (
    EXPORT_CHUNK,
    TRL_FIELDS,
    snapshot_data_card,
    snapshot_export_digest,
    snapshot_export_rankings_jsonl,
    snapshot_export_sft_jsonl,
    snapshot_export_trl_jsonl,
    snapshot_export_trl_parquet,
    snapshot_export_unpaired_jsonl,
    snapshot_is_conversational,
    snapshot_parquet_file,
    snapshot_rankings,
    snapshot_singles,
    snapshot_split,
)
from labeling.snapshots.lines import snapshot_lines_digest

__all__ = [
    "BOTH_BAD_CHOICES",
    "EXPORT_CHUNK",
    "TRL_FIELDS",
    "SnapshotError",
    "SnapshotFilter",
    "snapshot_build",
    "snapshot_build_from_data",
    "snapshot_data_card",
    "snapshot_export_digest",
    "snapshot_export_rankings_jsonl",
    "snapshot_export_sft_jsonl",
    "snapshot_export_trl_jsonl",
    "snapshot_export_trl_parquet",
    "snapshot_export_unpaired_jsonl",
    "snapshot_is_conversational",
    "snapshot_lines_digest",
    "snapshot_parquet_file",
    "snapshot_rankings",
    "snapshot_singles",
    "snapshot_split",
    "snapshot_split_of",
]
