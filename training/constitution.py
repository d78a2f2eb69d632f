"""The constitution labeler: AI feedback from written principles (writes).

A queue's admins write its *constitution* (a name and principles, one per line) on the
queue's assistance panel; each save that changes it adds a ``PrincipleSet`` version. An
admin then picks a registered model as the judge and starts a ``ConstitutionLabeler`` for
(the current version, that model): on the ``training`` queue it asks the model, task by
task, which answer the principles prefer (``training.core.judge``: the verdict tokens'
likelihood for a local model, the parsed reply, or its log-probs, for a served one) and
submits the resulting ranking as the labeler's pseudo-user, through the same machinery as
the reward-model AI labeler (``assistance.ai_pseudo_user``, ``assistance.ai_label_submit``):
marked AI, never in a human's overlap slot, out of the human agreement figures and out of
snapshots unless a snapshot asks for AI labels. One pseudo-user per (model, version), so
every label points to the exact principles it was produced with.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from functools import partial

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from generation import services as generation_services
from generation.backends import BackendError, SamplingParams, backend_for
from generation.backends.base import PromptInput
from generation.models import Completion, PolicyModel
from labeling import selectors as labeling_selectors
from labeling.models import LabelingQueue
from training import assistance
from training.assistance import AssistError
from training.core import judge
from training.core.runners import TrainingError
from training.models import ConstitutionLabeler, PrincipleSet

logger = logging.getLogger(__name__)

# A served judge writes its verdict in a few tokens; greedy, so a rerun asks the same.
SERVED_PARAMS = SamplingParams(temperature=0.0, max_new_tokens=8, seed=0, top_logprobs=5)
ACTIVE = (ConstitutionLabeler.Status.QUEUED, ConstitutionLabeler.Status.RUNNING)


def principles_hash(text: str) -> str:
    """SHA-256 of the principles' UTF-8 bytes, as stored."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def principle_set_current(*, queue: LabelingQueue) -> PrincipleSet | None:
    """The queue's latest constitution version, None before the first."""
    return PrincipleSet.objects.filter(queue=queue).order_by("-version").first()


@transaction.atomic
def principle_set_save(
    *, queue: LabelingQueue, name: str, text: str, user: User | None = None
) -> PrincipleSet:
    """Save the queue's constitution: a new version when the name or the text differ from
    the current one (the text stored as given), else the current version unchanged.

    AssistError on an empty or too long name or text, too many principles, or text that no
    database can store as given (NUL, lone surrogates)."""
    if not name.strip():
        raise AssistError("the constitution needs a name")
    if len(name) > PrincipleSet.MAX_NAME:
        raise AssistError(f"the name is longer than {PrincipleSet.MAX_NAME} characters")
    principles = judge.principles_parse(text)
    if not principles:
        raise AssistError("write at least one principle (one per line)")
    if len(text) > PrincipleSet.MAX_TEXT:
        raise AssistError(f"the principles are longer than {PrincipleSet.MAX_TEXT} characters")
    if len(principles) > judge.MAX_PRINCIPLES:
        raise AssistError(
            f"at most {judge.MAX_PRINCIPLES} principles (lines), not {len(principles)}"
        )
    try:
        generation_services.text_check_storable(name=name, principles=text)
    except generation_services.GenerationError as exc:
        raise AssistError(str(exc)) from None
    # Serialise the versions of one queue.
    LabelingQueue.objects.select_for_update().filter(pk=queue.pk).first()
    current = principle_set_current(queue=queue)
    if current is not None and current.name == name and current.text == text:
        return current
    latest = PrincipleSet.objects.filter(queue=queue).aggregate(v=Max("version"))["v"] or 0
    return PrincipleSet.objects.create(
        queue=queue,
        version=latest + 1,
        name=name,
        text=text,
        text_hash=principles_hash(text),
        created_by=user,
    )


def labeler_username(principle_set: PrincipleSet, model: PolicyModel) -> str:
    """``ai:<model> judging by <constitution> v<version>``, trimmed as ``ai_username``."""
    return assistance.ai_username(
        f"{model.name} judging by {principle_set.name} v{principle_set.version}",
        f"p{principle_set.pk}m{model.pk}",
    )


@transaction.atomic
def constitution_label_start(
    *, queue: LabelingQueue, judge_model: PolicyModel, user: User | None = None
) -> ConstitutionLabeler:
    """Queue ``judge_model`` to label the queue by its current constitution, on the
    training queue. Again for the same (version, model): the same labeler runs again (its
    earlier labels are edited where its verdicts changed)."""
    if queue.mode == LabelingQueue.Mode.SINGLE:
        raise AssistError(
            "the constitution labeler compares a task's answers; a single-answer queue has "
            "one answer per task"
        )
    principle_set = principle_set_current(queue=queue)
    if principle_set is None:
        raise AssistError("write the queue's constitution first")
    ai = assistance.ai_pseudo_user(
        username=labeler_username(principle_set, judge_model),
        description="AI labeler (constitution)",
    )
    labeler, created = ConstitutionLabeler.objects.select_for_update().get_or_create(
        principle_set=principle_set,
        judge_model=judge_model,
        defaults={"user": ai, "created_by": user},
    )
    if not created:
        if labeler.status in ACTIVE and not _stale(labeler):
            raise AssistError(f"{judge_model.name} is already labeling by {principle_set}")
        labeler.status = ConstitutionLabeler.Status.QUEUED
        labeler.error = ""
        labeler.save(update_fields=["status", "error", "updated_at"])
    labeler_id = labeler.pk
    from training.tasks import constitution_label as constitution_label_task

    transaction.on_commit(lambda: constitution_label_task.delay(labeler_id))
    return labeler


def _stale(labeler: ConstitutionLabeler) -> bool:
    """A running labeler that has not reported a task for ``TRAINING_STALE_AFTER_S``: its
    worker is gone, and it may be started again."""
    if labeler.status != ConstitutionLabeler.Status.RUNNING:
        return False
    age = (timezone.now() - labeler.updated_at).total_seconds()
    return age > settings.TRAINING_STALE_AFTER_S


# --- work on the training queue -------------------------------------------------------------

Scorer = Callable[[PromptInput, dict[int, str], list[str]], dict[tuple[int, int], float] | None]


def _local_scorer(model: PolicyModel) -> tuple[Scorer, Callable[[], None]]:
    """Score with the model's weights, loaded here (transformers; a vLLM model's folder is
    read the same way: the verdicts need two log-probs, not sampling)."""
    from training.core import hf

    tokenizer = hf.load_tokenizer(model.source)
    lm = hf.load_causal_lm(model.source, tokenizer).to(hf.resolve_device(None))
    log_probs = partial(judge.verdict_logps, lm, tokenizer)

    def score(
        prompt: PromptInput, answers: dict[int, str], principles: list[str]
    ) -> dict[tuple[int, int], float]:
        return judge.score_pairs(prompt, answers, principles, log_probs)

    def close() -> None:
        nonlocal lm
        lm = None

    return score, close


def _served_scorer(model: PolicyModel) -> tuple[Scorer, Callable[[], None]]:
    backend = backend_for(generation_services.policy_model_backend_spec(model), reuse=False)

    def ask(texts: list[str]) -> list[judge.Reply]:
        samples = backend.generate(list(texts), 1, SERVED_PARAMS)
        return [(group[0].text, group[0].token_logprobs) for group in samples]

    def score(
        prompt: PromptInput, answers: dict[int, str], principles: list[str]
    ) -> dict[tuple[int, int], float] | None:
        return judge.score_pairs_served(prompt, answers, principles, ask)

    return score, backend.close


def _scorer(model: PolicyModel) -> tuple[Scorer, Callable[[], None]]:
    if model.backend == PolicyModel.Backend.OPENAI:
        return _served_scorer(model)
    return _local_scorer(model)


def _queue_items(queue: LabelingQueue) -> list[tuple[int, PromptInput, dict[int, str]]]:
    """(task id, prompt, completion id -> text) of every task, by position."""
    tasks = labeling_selectors.queue_task_completions(queue=queue)
    ids = [c for completion_ids in tasks.values() for c in completion_ids]
    rows = {
        row["id"]: row
        for row in Completion.objects.filter(id__in=ids).values(
            "id", "text", "prompt__text", "prompt__messages"
        )
    }
    items: list[tuple[int, PromptInput, dict[int, str]]] = []
    for task_id, completion_ids in tasks.items():
        first = rows[completion_ids[0]]
        prompt: PromptInput = first["prompt__messages"] or first["prompt__text"]
        items.append((task_id, prompt, {c: rows[c]["text"] for c in completion_ids}))
    return items


def constitution_label_execute(*, labeler_id: int) -> str:
    """Label every task of the labeler's queue with its judge and constitution version.

    Claims the labeler (queued -> running; "skipped" when another worker has it), then per
    task: score every pair of answers (``training.core.judge``), order them, submit. A task
    whose served judge gave no usable verdict gets no label and is counted as
    unparseable. Returns "succeeded" or "failed" (the reason in ``error``)."""
    claimed = ConstitutionLabeler.objects.filter(
        pk=labeler_id, status=ConstitutionLabeler.Status.QUEUED
    ).update(
        status=ConstitutionLabeler.Status.RUNNING,
        labeled=0,
        unparseable=0,
        updated_at=timezone.now(),
    )
    if not claimed:
        return "skipped"
    labeler = ConstitutionLabeler.objects.select_related(
        "principle_set__queue", "judge_model", "user"
    ).get(pk=labeler_id)
    queue = labeler.principle_set.queue
    principles = judge.principles_parse(labeler.principle_set.text)
    labeled = unparseable = 0
    try:
        score, close = _scorer(labeler.judge_model)
        try:
            for task_id, prompt, answers in _queue_items(queue):
                if len(answers) < 2:
                    continue
                odds = score(prompt, answers, principles)
                if odds is None:
                    unparseable += 1
                else:
                    order = judge.order_by_log_odds(list(answers), odds)
                    assistance.ai_label_submit(
                        queue=queue, ai=labeler.user, task_id=task_id, order=order
                    )
                    labeled += 1
                # Also its heartbeat: a labeler silent for long may be started again.
                ConstitutionLabeler.objects.filter(pk=labeler_id).update(
                    labeled=labeled, unparseable=unparseable, updated_at=timezone.now()
                )
        finally:
            close()
    except (BackendError, TrainingError, AssistError, ValueError, OSError) as exc:
        logger.warning("constitution labeler %s failed: %s", labeler_id, exc)
        ConstitutionLabeler.objects.filter(pk=labeler_id).update(
            status=ConstitutionLabeler.Status.FAILED,
            error=str(exc)[:2000],
            labeled=labeled,
            unparseable=unparseable,
        )
        return "failed"
    ConstitutionLabeler.objects.filter(pk=labeler_id).update(
        status=ConstitutionLabeler.Status.SUCCEEDED, labeled=labeled, unparseable=unparseable
    )
    return "succeeded"
