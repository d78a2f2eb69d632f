"""Import existing preference data (HH-RLHF, TRL JSONL) into the comparison store.

Each pair becomes what labeling in Preflab would have produced: a prompt, two imported
completions, a finished pairwise task with one submitted ranking by a pseudo-annotator
named after the source, and its comparison. Snapshots and exports then treat imported and
collected preferences alike. All or nothing: a bad line imports nothing.
"""

from __future__ import annotations

from typing import IO

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from config.roles import pseudo_user_get_or_create
from generation import importers
from generation import services as generation_services
from generation.models import Completion
from labeling import services
from labeling.models import (
    Assignment,
    Comparison,
    LabelingQueue,
    LabelingTask,
    Ranking,
    TaskCompletion,
)
from labeling.services import LabelingError


def _pseudo_annotator(source: str) -> User:
    """An inactive account that stands for the dataset's original annotators."""
    return pseudo_user_get_or_create(username=f"import-{slugify(source)}"[:150] or "import")


@transaction.atomic
def preferences_import(
    *,
    data: bytes | str | IO[bytes],
    format: str,
    name: str,
    source_name: str = "",
    user: User | None = None,
) -> LabelingQueue:
    """Store every pair of the file as a labeled comparison, in a new (inactive) queue."""
    records = importers.parse_preferences(data, format=format)
    if not records:
        raise importers.ImportFileError(None, "the file holds no preference pairs")
    try:
        generation_services.text_check_storable(name=name, source_name=source_name)
    except generation_services.GenerationError as exc:
        raise LabelingError(str(exc)) from None
    name = name.strip() or source_name or "imported preferences"
    if LabelingQueue.objects.filter(name=name).exists():
        raise LabelingError(f"a queue named {name!r} already exists")

    prompt_set = generation_services.prompt_set_create(
        name=generation_services.prompt_set_free_name(name), user=user
    )
    by_hash, _, _ = generation_services.prompt_set_add_records(
        prompt_set=prompt_set, records=[r.prompt for r in records]
    )
    now = timezone.now()
    prompts = [by_hash[r.prompt.exact_hash] for r in records]
    job = generation_services.generation_job_create_imported(
        name=name,
        prompt_set=prompt_set,
        source_name=source_name,
        k=2,
        prompts=len(by_hash),
        user=user,
    )
    # A prompt repeated in the file gets further sample indices, so no pair is lost.
    seen: dict[int, int] = {}
    completions: list[Completion] = []
    for record, prompt in zip(records, prompts, strict=True):
        base = seen.get(prompt.pk, 0)
        seen[prompt.pk] = base + 2
        for offset, text in enumerate((record.chosen, record.rejected)):
            completions.append(
                Completion(
                    job=job,
                    prompt=prompt,
                    sample_index=base + offset,
                    text=text,
                    model_name=source_name,
                )
            )
    Completion.objects.bulk_create(completions, batch_size=2000)

    queue = LabelingQueue.objects.create(
        name=name,
        mode=LabelingQueue.Mode.PAIRWISE,
        guidelines=f"Imported from `{source_name or name}` ({format}).",
        is_active=False,
        created_by=user,
    )
    queue.jobs.set([job])
    annotator = _pseudo_annotator(source_name or name)
    tasks = LabelingTask.objects.bulk_create(
        [
            LabelingTask(queue=queue, prompt=prompt, position=i, submitted_count=1)
            for i, prompt in enumerate(prompts)
        ],
        batch_size=2000,
    )
    pairs = [(completions[2 * i], completions[2 * i + 1]) for i in range(len(records))]
    TaskCompletion.objects.bulk_create(
        [
            TaskCompletion(task=task, completion=completion, slot=slot)
            for task, pair in zip(tasks, pairs, strict=True)
            for slot, completion in enumerate(pair)
        ],
        batch_size=4000,
    )
    assignments = Assignment.objects.bulk_create(
        [
            Assignment(
                task=task,
                annotator=annotator,
                status=Assignment.Status.SUBMITTED,
                claimed_at=now,
                expires_at=now,
                finished_at=now,
            )
            for task in tasks
        ],
        batch_size=2000,
    )
    rankings = Ranking.objects.bulk_create(
        [
            Ranking(
                assignment=assignment,
                task=task,
                annotator=annotator,
                order=[[chosen.pk], [rejected.pk]],
            )
            for assignment, task, (chosen, rejected) in zip(assignments, tasks, pairs, strict=True)
        ],
        batch_size=2000,
    )
    Comparison.objects.bulk_create(
        [
            Comparison(
                ranking=ranking,
                queue=queue,
                prompt=task.prompt,
                chosen=chosen,
                rejected=rejected,
                margin=1.0,
                rank_gap=1.0,
                imported_margin=record.margin,
                annotator=annotator,
                created_at=now,
            )
            for ranking, task, (chosen, rejected), record in zip(
                rankings, tasks, pairs, records, strict=True
            )
        ],
        batch_size=2000,
    )
    services.ranking_versions_record_imported(rankings=rankings, now=now)
    return queue
