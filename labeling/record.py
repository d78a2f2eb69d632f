"""The label record: every version of every annotator's label, exported raw.

Snapshots export aggregated, filtered datasets; this exports what each annotator gave,
version by version (submits, edits, undo tombstones, re-submits), with its times, so no
label ever given is missing from an export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import QuerySet

from generation.models import Completion
from labeling.models import RankingVersion, TaskCompletion
from labeling.services import ALIASES

EXPORT_CHUNK = 2000
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def label_versions(*, queue_ids: Sequence[int] | None = None) -> QuerySet[RankingVersion]:
    """Every version, per annotator, task and version number."""
    versions = RankingVersion.objects.all()
    if queue_ids:
        versions = versions.filter(task__queue_id__in=list(queue_ids))
    return versions.order_by("annotator__username", "task_id", "version")


def _version_record(v: RankingVersion, slots: list[tuple[int, str]], latest: int) -> dict[str, Any]:
    prompt = v.task.prompt
    return {
        "queue": v.task.queue.name,
        "task": v.task_id,
        "prompt": prompt.messages or prompt.text,
        # The task's answers as the annotator saw them (A, B, ...), with their ids.
        "completions": [
            {"id": c, "alias": ALIASES[i], "text": text} for i, (c, text) in enumerate(slots)
        ],
        "annotator": v.annotator.get_username(),
        "version": v.version,
        "action": v.action,
        "current": v.version == latest and v.action != RankingVersion.Action.UNDONE,
        "order": v.order,
        "scores": v.scores,
        "both_bad": v.both_bad,
        "verdict": v.verdict,
        "flags": v.flags,
        "comment": v.comment,
        "demonstration": v.demonstration,
        "time_spent_ms": v.time_spent_ms,
        "first_submitted_at": v.first_submitted_at.isoformat(),
        "created_at": v.created_at.isoformat(),
    }


def label_versions_export_jsonl(*, queue_ids: Sequence[int] | None = None) -> Iterator[bytes]:
    """JSON lines, one per version: queue, task, prompt, the answers (id, alias, text),
    annotator, version, action (submitted, edited, undone, resubmitted), whether it is the
    current label, order (tie groups of completion ids, best first; empty on an undo),
    scores, both_bad, verdict (single answers: good or bad; else empty), flags, comment, demonstration, time spent, first-submitted and
    version times."""
    versions = label_versions(queue_ids=queue_ids).select_related(
        "task__prompt", "task__queue", "annotator"
    )
    batch: list[RankingVersion] = []

    def flush(batch: list[RankingVersion]) -> bytes:
        task_ids = {v.task_id for v in batch}
        slots: dict[int, list[int]] = {}
        for task_id, completion_id in (
            TaskCompletion.objects.filter(task_id__in=task_ids)
            .order_by("task_id", "slot")
            .values_list("task_id", "completion_id")
        ):
            slots.setdefault(task_id, []).append(completion_id)
        texts = dict(
            Completion.objects.filter(
                pk__in={c for ids in slots.values() for c in ids}
            ).values_list("pk", "text")
        )
        latest: dict[tuple[int, int], int] = {}
        for task_id, annotator_id, version in RankingVersion.objects.filter(
            task_id__in=task_ids
        ).values_list("task_id", "annotator_id", "version"):
            key = (task_id, annotator_id)
            latest[key] = max(latest.get(key, 0), version)
        lines = [
            _ENCODE(
                _version_record(
                    v,
                    [(c, texts[c]) for c in slots.get(v.task_id, [])],
                    latest[(v.task_id, v.annotator_id)],
                )
            )
            + "\n"
            for v in batch
        ]
        return "".join(lines).encode("utf-8")

    for version in versions.iterator(chunk_size=EXPORT_CHUNK):
        batch.append(version)
        if len(batch) >= EXPORT_CHUNK:
            yield flush(batch)
            batch = []
    if batch:
        yield flush(batch)
