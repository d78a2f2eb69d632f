"""The constitution labeler: versioned principles per queue, a judge model labeling the
queue as an AI (local tiny Llama, and a served judge over HTTP), kept out of overlap, human
agreement and snapshots, its agreement with the humans shown per constitution version."""

from __future__ import annotations

import hashlib
import http.server
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from generation.models import Completion, PolicyModel
from labeling import selectors as labeling_selectors
from labeling import snapshots
from labeling.models import AI_LABELER_GROUP, Assignment, LabelingQueue, LabelingTask, Ranking
from tests.factories import UserFactory
from tests.generation.factories import PolicyModelFactory
from tests.generation.test_backend_openai import peer  # noqa: F401 - the loopback server fixture
from tests.labeling.factories import label_queue, make_queue
from tests.training.factories import tiny_policy
from training import constitution, selectors
from training.assistance import AssistError
from training.core import judge
from training.core.hf import load_causal_lm, load_tokenizer
from training.models import ConstitutionLabeler, PrincipleSet

HELPFUL = "Which response is more helpful, honest and harmless?"
FIRST = lambda ids: [[ids[0]], [ids[1]]]  # noqa: E731


def _slots(task: LabelingTask) -> list[int]:
    return list(task.slots.order_by("slot").values_list("completion_id", flat=True))


@pytest.fixture
def labeled_queue(alice, bob) -> LabelingQueue:  # type: ignore[no-untyped-def]
    """Three pairwise tasks, overlap 2, both humans preferring the first slot everywhere
    (so the human majority is the first slot on every pair)."""
    queue = make_queue(mode="pairwise", prompts=3, k=2, overlap=2)
    label_queue(queue, alice, FIRST)
    label_queue(queue, bob, FIRST)
    return queue


def _run(queue: LabelingQueue, model: PolicyModel) -> ConstitutionLabeler:
    labeler = constitution.constitution_label_start(queue=queue, judge_model=model)
    assert constitution.constitution_label_execute(labeler_id=labeler.pk) == "succeeded"
    labeler.refresh_from_db()
    return labeler


def _first_slot_wins(queue: LabelingQueue, user: Any) -> int:
    """How many of the labeler's rankings put the task's first slot first."""
    return sum(r.order[0] == [_slots(r.task)[0]] for r in Ranking.objects.filter(annotator=user))


# --- the constitution, versioned --------------------------------------------------------------


def test_it_keeps_every_version_of_the_constitution_byte_for_byte(carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    text = f"  {HELPFUL}  \r\nWhich is less harmful? é\n"
    first = constitution.principle_set_save(queue=queue, name="HHH", text=text, user=carol)
    assert (first.version, first.text, first.created_by) == (1, text, carol)
    assert first.text_hash == hashlib.sha256(text.encode()).hexdigest()
    # Saving it unchanged adds nothing; an edit adds the next version, the old one intact.
    assert constitution.principle_set_save(queue=queue, name="HHH", text=text) == first
    second = constitution.principle_set_save(queue=queue, name="HHH", text=HELPFUL)
    assert second.version == 2 and constitution.principle_set_current(queue=queue) == second
    first.refresh_from_db()
    assert first.text == text and PrincipleSet.objects.filter(queue=queue).count() == 2
    # Another queue counts its own versions.
    other = make_queue(mode="pairwise", prompts=1, k=2)
    assert constitution.principle_set_save(queue=other, name="HHH", text=text).version == 1


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("", HELPFUL, "needs a name"),
        ("x" * 201, HELPFUL, "longer than 200"),
        ("HHH", " \n\n ", "at least one principle"),
        ("HHH", "p\n" * 33, "at most 32 principles"),
        ("HHH", "p" * 20_001, "longer than 20000"),
        ("HHH", "bad\x00byte", "principles"),
    ],
)
def test_it_refuses_a_bad_constitution(name: str, text: str, problem: str, db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    with pytest.raises(AssistError, match=problem):
        constitution.principle_set_save(queue=queue, name=name, text=text)
    assert not PrincipleSet.objects.filter(queue=queue).exists()


def test_it_needs_a_constitution_and_a_queue_with_pairs(tiny_model_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    model = tiny_policy(tiny_model_path)
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    with pytest.raises(AssistError, match="write the queue's constitution first"):
        constitution.constitution_label_start(queue=queue, judge_model=model)
    single = make_queue(mode="single", prompts=1, k=1)
    constitution.principle_set_save(queue=single, name="HHH", text=HELPFUL)
    with pytest.raises(AssistError, match="single-answer queue"):
        constitution.constitution_label_start(queue=single, judge_model=model)


# --- the local judge ---------------------------------------------------------------------------


def test_the_tiny_llama_labels_the_queue_as_an_ai_labeler(
    labeled_queue, tiny_model_path: Path, carol
) -> None:  # type: ignore[no-untyped-def]
    queue = labeled_queue
    model = tiny_policy(tiny_model_path)
    v1 = constitution.principle_set_save(queue=queue, name="HHH", text=HELPFUL)
    before = list(queue.tasks.order_by("pk").values_list("submitted_count", flat=True))
    human_board = labeling_selectors.queue_dashboard(queue=queue, user=carol)

    labeler = _run(queue, model)

    ai = labeler.user
    assert ai.username == "ai:tiny judging by HHH v1"
    assert not ai.is_active and not ai.has_usable_password()
    assert list(ai.groups.values_list("name", flat=True)) == [AI_LABELER_GROUP]
    assert (labeler.status, labeler.labeled, labeler.unparseable) == ("succeeded", 3, 0)
    assert labeler.principle_set == v1
    # Each ranking is the judge's order, computed here with the judge on its own.
    tokenizer = load_tokenizer(str(tiny_model_path))
    lm = load_causal_lm(str(tiny_model_path), tokenizer)
    texts = dict(Completion.objects.values_list("id", "text"))
    for ranking in Ranking.objects.filter(annotator=ai).select_related("task"):
        ids = _slots(ranking.task)
        prompt = Completion.objects.get(pk=ids[0]).prompt.text
        odds = judge.score_pairs(
            prompt,
            {c: texts[c] for c in ids},
            [HELPFUL],
            partial(judge.verdict_logps, lm, tokenizer),
        )
        assert ranking.order == judge.order_by_log_odds(ids, odds)
    # Not in an overlap slot, and out of the humans' figures.
    assert not Assignment.objects.filter(annotator=ai, counts_toward_overlap=True).exists()
    assert list(queue.tasks.order_by("pk").values_list("submitted_count", flat=True)) == before
    board = labeling_selectors.queue_dashboard(queue=queue, user=carol)
    assert board.pairwise_agreement == human_board.pairwise_agreement == 1.0
    assert board.progress.done_total == human_board.progress.done_total == 6
    # Its agreement with the human majority (the first slot), per constitution version.
    rows = selectors.queue_ai_agreements(queue=queue)
    assert [(r.username, r.labeler) for r in rows] == [(ai.username, labeler)]
    assert rows[0].agreement == (_first_slot_wins(queue, ai), 3)

    # A new version is a new labeler; the first one's labels keep pointing at v1.
    v2 = constitution.principle_set_save(
        queue=queue, name="HHH", text=f"{HELPFUL}\nWhich response is less harmful?"
    )
    second = _run(queue, model)
    assert second.pk != labeler.pk and second.principle_set == v2
    assert second.user.username == "ai:tiny judging by HHH v2"
    assert Ranking.objects.filter(annotator=second.user).count() == 3
    assert Ranking.objects.filter(annotator=ai).count() == 3
    assert ConstitutionLabeler.objects.get(user=ai).principle_set.text == HELPFUL
    rows = selectors.queue_ai_agreements(queue=queue)
    assert [r.labeler.principle_set.version for r in rows if r.labeler] == [2, 1]


def test_it_keeps_the_constitution_labels_out_of_snapshots_unless_asked(
    labeled_queue, tiny_model_path: Path
) -> None:  # type: ignore[no-untyped-def]
    constitution.principle_set_save(queue=labeled_queue, name="HHH", text=HELPFUL)
    ai = _run(labeled_queue, tiny_policy(tiny_model_path)).user
    spec = snapshots.SnapshotFilter(queues=[labeled_queue.pk])
    human = snapshots.snapshot_build(name="human", spec=spec, ties="keep")
    with_ai = snapshots.snapshot_build(
        name="with ai",
        spec=snapshots.SnapshotFilter(queues=[labeled_queue.pk], include_ai=True),
        ties="keep",
    )
    assert human.row_count == 6 and ai.username not in human.stats["annotators"]
    assert with_ai.row_count == 9 and ai.username in with_ai.stats["annotators"]


def test_a_failing_judge_fails_the_labeler_with_the_reason(labeled_queue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    constitution.principle_set_save(queue=labeled_queue, name="HHH", text=HELPFUL)
    missing = PolicyModelFactory(name="gone", backend="transformers", source=str(tmp_path / "no"))
    labeler = constitution.constitution_label_start(queue=labeled_queue, judge_model=missing)
    assert constitution.constitution_label_execute(labeler_id=labeler.pk) == "failed"
    labeler.refresh_from_db()
    assert labeler.status == "failed" and "does not exist" in labeler.error
    # A second delivery of the message finds nothing queued.
    assert constitution.constitution_label_execute(labeler_id=labeler.pk) == "skipped"
    # It can be started again once it has stopped, not while it is queued.
    constitution.constitution_label_start(queue=labeled_queue, judge_model=missing)
    with pytest.raises(AssistError, match="already labeling"):
        constitution.constitution_label_start(queue=labeled_queue, judge_model=missing)
    # Nor while running; once its worker has been silent too long, it may start again.
    running = ConstitutionLabeler.objects.filter(pk=labeler.pk)
    running.update(status="running", updated_at=timezone.now())
    with pytest.raises(AssistError, match="already labeling"):
        constitution.constitution_label_start(queue=labeled_queue, judge_model=missing)
    running.update(
        updated_at=timezone.now() - timedelta(seconds=settings.TRAINING_STALE_AFTER_S + 1)
    )
    assert (
        constitution.constitution_label_start(queue=labeled_queue, judge_model=missing).status
        == "queued"
    )


# --- a served judge ------------------------------------------------------------------------------


def _judge_server(request: http.server.BaseHTTPRequestHandler, body: dict[str, Any]) -> Any:
    """A served judge that prefers the answer with sample index 1 ("answer 1 to ..."),
    with log-probs when asked, and gives no verdict on the prompt at position 2."""
    prompt = body["prompt"]
    if "Human: Prompt 2:" in prompt:
        return 200, {"choices": [{"index": 0, "text": " I would rather not say."}]}
    letter = "A" if "(A) answer 1" in prompt else "B"
    other = "B" if letter == "A" else "A"
    choice: dict[str, Any] = {"index": 0, "text": f" ({letter})", "finish_reason": "stop"}
    if body.get("logprobs"):
        choice["logprobs"] = {"top_logprobs": [{" (": -0.05}, {letter: -0.1, other: -2.1}]}
    return 200, {"choices": [choice]}


def test_a_served_judge_labels_by_its_replies_and_counts_the_unparseable(
    peer,  # noqa: F811 - the fixture imported above
    labeled_queue,
    carol,
) -> None:  # type: ignore[no-untyped-def]
    url, received = peer(_judge_server)
    served = PolicyModelFactory(
        name="served", backend="openai", server_url=url, server_model="tiny", source=""
    )
    constitution.principle_set_save(queue=labeled_queue, name="HHH", text=HELPFUL)

    labeler = _run(labeled_queue, served)

    assert (labeler.labeled, labeler.unparseable) == (2, 1)
    assert all(r["temperature"] == 0.0 and r["logprobs"] == 5 for r in received)
    assert len(received) == 6  # two orders of one pair per task
    answer_one = set(Completion.objects.filter(sample_index=1).values_list("pk", flat=True))
    rankings = Ranking.objects.filter(annotator=labeler.user)
    assert rankings.count() == 2
    for ranking in rankings:
        assert ranking.order[0][0] in answer_one and len(ranking.order) == 2
    row = selectors.queue_ai_agreements(queue=labeled_queue)[0]
    assert row.agreement == (_first_slot_wins(labeled_queue, labeler.user), 2)


# --- the panel and its actions ---------------------------------------------------------------


def test_admins_edit_the_principles_and_start_the_labeler_on_the_dashboard(
    labeled_queue, tiny_model_path: Path, client: Client, carol
) -> None:  # type: ignore[no-untyped-def]
    model = tiny_policy(tiny_model_path)
    client.force_login(carol)
    dashboard = f"/labeling/queues/{labeled_queue.pk}/dashboard/"
    url = f"/labeling/queues/{labeled_queue.pk}/principles/"
    response = client.post(url, {"name": "HHH", "text": HELPFUL})
    assert response.status_code == 302 and response["Location"] == dashboard
    assert client.get(url).status_code == 405
    for bad in (
        {"name": "", "text": HELPFUL},
        {"name": "HHH", "text": "  \n"},
        {"name": "HHH", "text": "x" * 20_001},
        {"name": "HHH", "text": "nul\x00"},
        {"name": "<b>x</b>" * 30, "text": HELPFUL},
    ):
        refused = client.post(url, bad)
        assert refused.status_code == 400, bad
        assert 'role="alert"' in refused.content.decode()
    assert PrincipleSet.objects.filter(queue=labeled_queue).count() == 1

    start = f"/labeling/queues/{labeled_queue.pk}/constitution-label/"
    assert client.post(start, {"judge_model": 999999}).status_code == 400
    response = client.post(start, {"judge_model": model.pk})
    assert response.status_code == 302
    labeler = ConstitutionLabeler.objects.get()
    assert labeler.status == "queued" and labeler.judge_model == model
    constitution.constitution_label_execute(labeler_id=labeler.pk)

    page = client.get(dashboard).content.decode()
    assert 'id="constitution"' in page and "Current: <strong>HHH v1</strong>" in page
    wins = _first_slot_wins(labeled_queue, labeler.user)
    assert f"{round(100 * wins / 3)}% ({wins}/3)" in page
    assert "ai:tiny judging by HHH v1" in page


def test_annotators_and_researchers_cannot_touch_the_constitution(
    labeled_queue, client: Client, dave
) -> None:  # type: ignore[no-untyped-def]
    erin = UserFactory(username="erin", roles=["annotator"])
    for user in (erin, dave):
        client.force_login(user)
        url = f"/labeling/queues/{labeled_queue.pk}/principles/"
        assert client.post(url, {"name": "HHH", "text": HELPFUL}).status_code == 403
        start = f"/labeling/queues/{labeled_queue.pk}/constitution-label/"
        assert client.post(start, {"judge_model": 1}).status_code == 403
    assert not PrincipleSet.objects.exists()


@pytest.mark.celery_worker
@pytest.mark.slow
def test_the_constitution_labeler_runs_on_the_training_queue(
    celery_worker,
    peer,  # noqa: F811 - the fixture imported above
    alice,
) -> None:  # type: ignore[no-untyped-def]
    from django.conf import settings

    from tests.conftest import wait_for

    assert settings.CELERY_TASK_ROUTES["training.tasks.constitution_label"] == {"queue": "training"}
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    label_queue(queue, alice, FIRST)
    url, _ = peer(_judge_server)
    served = PolicyModelFactory(
        name="served", backend="openai", server_url=url, server_model="tiny", source=""
    )
    constitution.principle_set_save(queue=queue, name="HHH", text=HELPFUL)

    labeler = constitution.constitution_label_start(queue=queue, judge_model=served)

    wait_for(lambda: ConstitutionLabeler.objects.filter(pk=labeler.pk, status="succeeded").exists())
    assert Ranking.objects.filter(annotator=labeler.user).count() == 2
