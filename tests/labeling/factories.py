from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User

from generation.models import Completion, GenerationJob
from labeling import services
from labeling.models import Assignment, LabelingQueue
from tests.generation.factories import GenerationJobFactory, prompt_set_with_prompts


def finished_job(*, prompts: int = 3, k: int = 4, texts: list[str] | None = None) -> GenerationJob:
    """A succeeded job with k completions per prompt, without running a model."""
    prompt_set = prompt_set_with_prompts(prompts)
    job = GenerationJobFactory(
        prompt_set=prompt_set, k=k, status="succeeded", prompts_total=prompts, prompts_done=prompts
    )
    for prompt in prompt_set.prompts.all():
        for i in range(k):
            text = texts[i] if texts else f"answer {i} to {prompt.position}"
            Completion.objects.create(job=job, prompt=prompt, sample_index=i, text=text)
    return job


def make_queue(
    *, mode: str = "ranking", prompts: int = 3, k: int = 4, overlap: int = 1, **kwargs: object
) -> LabelingQueue:
    job = finished_job(prompts=prompts, k=k)
    name = str(kwargs.pop("name", f"queue-{job.pk}"))
    return services.labeling_queue_create(
        jobs=[job],
        settings=services.QueueSettings(name=name, mode=mode, overlap=overlap, **kwargs),  # type: ignore[arg-type]
    )


def claim_next(queue: LabelingQueue, user: User) -> Assignment:
    """``user``'s next task in ``queue``, which the test expects there to be."""
    assignment = services.task_claim_next(queue=queue, user=user)
    assert assignment is not None, f"no task left for {user} in {queue}"
    return assignment


def display_order(ids: list[int]) -> list[list[int]]:
    """Each completion ranked where it was shown: the first shown is the best."""
    return [[i] for i in ids]


def label_queue(
    queue: LabelingQueue,
    user: User,
    order: Callable[[list[int]], list[list[int]]] = display_order,
    scores_from: Callable[[list[int]], dict[str, int]] | None = None,
    **submission: Any,
) -> int:
    """``user`` labels every task they can claim; ``order`` turns the display order of a
    task's completion ids into the submitted ranking (default: display order is best
    first). Returns how many tasks were labeled."""
    done = 0
    while (claim := services.task_claim_next(queue=queue, user=user)) is not None:
        ids = list(claim.task.slots.order_by("slot").values_list("completion_id", flat=True))
        services.ranking_submit(
            assignment_id=claim.pk,
            user=user,
            submission=services.Submission(
                order=order(ids),
                scores=scores_from(ids) if scores_from else None,
                **submission,
            ),
        )
        done += 1
    return done


def judge_queue(
    queue: LabelingQueue,
    user: object,
    verdict_of: Callable[[int, str], str] = lambda i, text: "good",
    score_of: Callable[[str], int | None] = lambda verdict: None,
    **submission: object,
) -> int:
    """``user`` judges every answer of a single-answer queue they can claim: ``verdict_of``
    (the task's position in the claims, the answer's text) says good or bad, ``score_of``
    the optional score. Returns how many were judged."""
    done = 0
    while (claim := services.task_claim_next(queue=queue, user=user)) is not None:  # type: ignore[arg-type]
        completion = claim.task.slots.get().completion
        verdict = verdict_of(done, completion.text)
        score = score_of(verdict)
        services.ranking_submit(
            assignment_id=claim.pk,
            user=user,  # type: ignore[arg-type]
            submission=services.Submission(
                order=[[completion.pk]],
                verdict=verdict,
                scores={str(completion.pk): score} if score is not None else None,
                **submission,  # type: ignore[arg-type]
            ),
        )
        done += 1
    return done
