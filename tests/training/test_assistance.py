"""Reward-model assistance: priorities and uncertainty-first claims, the reward model's
agreement with annotators, and the AI labeler (kept out of snapshots unless asked for)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client
from rest_framework.test import APIClient

from labeling import agreement, selectors, services, snapshots
from labeling.models import (
    AI_LABELER_GROUP,
    Assignment,
    Comparison,
    DatasetSnapshot,
    LabelingQueue,
    LabelingTask,
    Ranking,
)
from tests.factories import UserFactory
from tests.labeling.factories import label_queue, make_queue
from tests.queries import first_row
from tests.training.factories import TrainingRunFactory, tiny_policy
from training import assistance
from training.models import CompletionReward, QueueAssistance, RewardScoring, TrainingRun

FIRST = {"first": lambda ids: [[ids[0]], [ids[1]]], "second": lambda ids: [[ids[1]], [ids[0]]]}


@pytest.fixture
def reward_run(db, tmp_path: Path) -> TrainingRun:  # type: ignore[no-untyped-def]
    """A finished reward run whose rewards the tests write by hand (no model loaded)."""
    return TrainingRunFactory(  # type: ignore[no-any-return]
        name="rm-hand", kind="reward", status="succeeded", final_dir=str(tmp_path)
    )


def _note(queue: LabelingQueue) -> str:
    """The queue's assistance note ("" before any assistance)."""
    assist = first_row(QueueAssistance.objects.filter(queue=queue))
    return assist.note if assist else ""


def _assist_with(queue: LabelingQueue, run: TrainingRun) -> None:
    """Point the queue at ``run`` by hand (no scoring, no priorities)."""
    QueueAssistance.objects.update_or_create(queue=queue, defaults={"reward_run": run})


def _slots(task: LabelingTask) -> list[int]:
    return list(task.slots.order_by("slot").values_list("completion_id", flat=True))


def _score(queue: LabelingQueue, run: TrainingRun, rewards: dict[int, float]) -> None:
    """Rewards by hand, and every job of the queue marked as scored by the run."""
    CompletionReward.objects.bulk_create(
        [CompletionReward(completion_id=c, reward_run=run, reward=r) for c, r in rewards.items()]
    )
    for job in queue.jobs.all():
        RewardScoring.objects.create(reward_run=run, job=job, status="succeeded")


def _gapped(queue: LabelingQueue, run: TrainingRun, gaps: list[float]) -> list[int]:
    """Give the queue's pairwise tasks (by position) the reward gaps ``gaps``, the first
    slot higher; returns the task ids by position."""
    tasks = list(queue.tasks.order_by("position"))
    rewards: dict[int, float] = {}
    for task, gap in zip(tasks, gaps, strict=True):
        a, b = _slots(task)
        rewards[a], rewards[b] = 1.0 + gap, 1.0
    _score(queue, run, rewards)
    return [t.pk for t in tasks]


# --- priorities and uncertainty first ---------------------------------------------------------


def test_it_takes_the_smallest_reward_gap_as_a_tasks_uncertainty() -> None:
    assert agreement.reward_gap([0.5, -1.5]) == pytest.approx(2.0)
    assert agreement.reward_gap([3.0, 0.0, 2.5, 10.0]) == pytest.approx(0.5)
    assert agreement.reward_gap([1.0]) is None
    assert agreement.order_by_reward({5: 0.1, 6: 2.0, 7: 0.1, 8: -3.0}) == [[6], [5, 7], [8]]


def test_it_computes_each_tasks_priority_from_the_reward_run(reward_run) -> None:  # type: ignore[no-untyped-def]
    pairwise = make_queue(mode="pairwise", prompts=3, k=2)
    ranking = make_queue(mode="ranking", prompts=2, k=3)
    _gapped(pairwise, reward_run, [0.75, 0.25, 2.0])
    first, second = ranking.tasks.order_by("position")
    ids = _slots(first)
    _score(ranking, reward_run, {ids[0]: 0.0, ids[1]: 3.0, ids[2]: 1.0})
    # The second ranking task misses one reward: no priority.
    partial = _slots(second)
    _score(ranking, reward_run, {partial[0]: 0.0, partial[1]: 4.0})

    for queue in (pairwise, ranking):
        assistance.queue_assistance_set(
            queue=queue, reward_run=reward_run, task_order="uncertainty"
        )

    priorities = list(pairwise.tasks.order_by("position").values_list("priority", flat=True))
    assert priorities == pytest.approx([0.75, 0.25, 2.0])
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.priority == pytest.approx(1.0) and second.priority is None
    assert _note(pairwise) == "Priorities from rm-hand: 3 of 3 tasks scored."
    # Dropping the reward run clears the priorities and goes back to position order.
    assistance.queue_assistance_set(queue=pairwise, reward_run=None, task_order="position")
    assert not pairwise.tasks.filter(priority__isnull=False).exists()


def test_it_serves_the_least_certain_pairs_first(reward_run, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=5, k=2)
    ids = _gapped(queue, reward_run, [0.5, 0.1, 3.0, 0.0, 1.0])
    # One task loses its rewards: unscored tasks come last.
    CompletionReward.objects.filter(
        completion_id__in=_slots(LabelingTask.objects.get(pk=ids[4]))
    ).delete()
    assistance.queue_assistance_set(queue=queue, reward_run=reward_run, task_order="uncertainty")

    served: list[float] = []
    while (claim := services.task_claim_next(queue=queue, user=alice)) is not None:
        served.append(claim.task_id)
        a, b = _slots(claim.task)
        services.ranking_submit(
            assignment_id=claim.pk, user=alice, submission=services.Submission(order=[[a], [b]])
        )

    assert served == [ids[3], ids[1], ids[0], ids[2], ids[4]]  # gaps 0, 0.1, 0.5, 3, none


def test_it_keeps_position_order_unless_asked(reward_run, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=3, k=2)
    ids = _gapped(queue, reward_run, [2.0, 1.0, 0.0])
    assistance.queue_assistance_set(queue=queue, reward_run=reward_run, task_order="position")
    claim = services.task_claim_next(queue=queue, user=alice)
    assert claim is not None and claim.task_id == ids[0]


def test_it_refuses_uncertainty_without_a_finished_reward_run(reward_run) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    with pytest.raises(assistance.AssistError, match="needs a reward run"):
        assistance.queue_assistance_set(queue=queue, reward_run=None, task_order="uncertainty")
    dpo = TrainingRunFactory(kind="dpo", status="succeeded", snapshot=reward_run.snapshot)
    with pytest.raises(assistance.AssistError, match="not a reward-model run"):
        assistance.queue_assistance_set(queue=queue, reward_run=dpo)
    running = TrainingRunFactory(kind="reward", status="running", snapshot=reward_run.snapshot)
    with pytest.raises(assistance.AssistError, match="has not finished"):
        assistance.queue_assistance_set(queue=queue, reward_run=running)
    with pytest.raises(assistance.AssistError, match="choose a reward run"):
        assistance.queue_ai_label_start(queue=queue)


def test_it_queues_scorings_for_unscored_jobs_and_waits_for_them(reward_run) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    assistance.queue_assistance_set(queue=queue, reward_run=reward_run, task_order="uncertainty")
    scoring = RewardScoring.objects.get(reward_run=reward_run)
    assert scoring.status == "queued" and scoring.job == queue.jobs.get()
    assert _note(queue).startswith("Scoring 1 job with rm-hand")
    assert not queue.tasks.filter(priority__isnull=False).exists()
    # Saving again while it is queued does not queue a second scoring.
    assistance.queue_assistance_set(queue=queue, reward_run=reward_run, task_order="uncertainty")
    assert RewardScoring.objects.filter(reward_run=reward_run).count() == 1
    # Another worker is scoring: the finishing task waits (and retries).
    RewardScoring.objects.filter(pk=scoring.pk).update(status="running")
    assert assistance.queue_assist_finish(queue_id=queue.pk) == "waiting"
    RewardScoring.objects.filter(pk=scoring.pk).update(status="failed", error="out of memory")
    assert assistance.queue_assist_finish(queue_id=queue.pk) == "failed"
    assert "failed: out of memory" in _note(queue)


@pytest.mark.django_db(transaction=True)
def test_it_never_over_assigns_uncertainty_first_with_concurrent_annotators(tmp_path) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=12, k=2, overlap=2)
    run = TrainingRunFactory(kind="reward", status="succeeded", final_dir=str(tmp_path))
    _gapped(queue, run, [float(i % 4) for i in range(12)])
    assistance.queue_assistance_set(queue=queue, reward_run=run, task_order="uncertainty")
    users = [UserFactory(username=f"annotator{i}", roles=["annotator"]) for i in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def work(user) -> None:  # type: ignore[no-untyped-def]
        try:
            start.wait()
            label_queue(queue, user, FIRST["first"])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    submitted = Assignment.objects.filter(task__queue=queue, status="submitted")
    assert set(Counter(submitted.values_list("task_id", flat=True)).values()) == {2}
    assert submitted.count() == 24
    assert max(Counter(submitted.values_list("task_id", "annotator_id")).values()) == 1


# --- agreement with the reward model ----------------------------------------------------------


@pytest.fixture
def agreed_queue(reward_run, alice, bob) -> LabelingQueue:  # type: ignore[no-untyped-def]
    """Four pairwise tasks, overlap 2; the reward model prefers the first slot each time.
    alice picks the first slot everywhere (4/4 with the model); bob picks the second twice,
    ties once and picks the first once (1/3: the tie does not count)."""
    queue = make_queue(mode="pairwise", prompts=4, k=2, overlap=2)
    _gapped(queue, reward_run, [1.0, 2.0, 3.0, 4.0])
    label_queue(queue, alice, FIRST["first"])
    picks = iter([FIRST["second"], FIRST["second"], lambda ids: [ids], FIRST["first"]])
    label_queue(queue, bob, lambda ids: next(picks)(ids))
    assistance.queue_assistance_set(queue=queue, reward_run=reward_run)
    return queue


def test_it_measures_the_reward_models_agreement_per_queue_and_annotator(
    agreed_queue, carol
) -> None:  # type: ignore[no-untyped-def]
    board = selectors.queue_dashboard(queue=agreed_queue, user=carol)
    assert board.reward is not None and board.reward.run_name == "rm-hand"
    assert board.reward.humans == (5, 7)  # bob's tie does not count
    by_name = {a.username: a for a in board.annotators}
    assert by_name["alice"].reward_agree == (4, 4) and by_name["bob"].reward_agree == (1, 3)
    assert board.reward.ai_vs_humans == []


def test_it_has_no_reward_agreement_without_scores(reward_run, alice, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    label_queue(queue, alice)
    _assist_with(queue, reward_run)
    board = selectors.queue_dashboard(queue=queue, user=carol)
    assert board.reward is None


def test_the_ai_labeler_labels_without_taking_a_humans_slot(
    agreed_queue, reward_run, carol
) -> None:  # type: ignore[no-untyped-def]
    before = list(agreed_queue.tasks.values_list("submitted_count", flat=True))

    assert (
        assistance.queue_ai_label(queue_id=agreed_queue.pk, reward_run_id=reward_run.pk) == "done"
    )

    ai = Ranking.objects.get(
        task__queue=agreed_queue, annotator__username="ai:rm-hand", task__position=0
    ).annotator
    assert not ai.is_active and not ai.has_usable_password()
    assert list(ai.groups.values_list("name", flat=True)) == [AI_LABELER_GROUP]
    assert Ranking.objects.filter(annotator=ai).count() == 4
    for ranking in Ranking.objects.filter(annotator=ai):
        a, b = _slots(ranking.task)
        assert ranking.order == [[a], [b]]  # the first slot has the higher reward
    assert not Assignment.objects.filter(annotator=ai, counts_toward_overlap=True).exists()
    assert list(agreed_queue.tasks.values_list("submitted_count", flat=True)) == before
    # The humans' figures are unchanged; the AI is compared with the human majority, which
    # exists on the last task only (alice and bob split or tie on the others).
    board = selectors.queue_dashboard(queue=agreed_queue, user=carol)
    assert board.reward is not None and board.reward.humans == (5, 7)
    assert board.reward.ai_vs_humans == [("ai:rm-hand", (1, 1))]
    by_name = {a.username: a for a in board.annotators}
    assert by_name["ai:rm-hand"].is_ai and not by_name["alice"].is_ai
    assert by_name["ai:rm-hand"].reward_agree == (4, 4)
    assert by_name["alice"].majority_agree == (1, 4)  # against bob alone, as before
    assert board.pairwise_agreement == pytest.approx(1 / 4)
    assert board.progress.done_total == 8
    # Running it again changes nothing.
    assistance.queue_ai_label(queue_id=agreed_queue.pk, reward_run_id=reward_run.pk)
    assert Comparison.objects.filter(annotator=ai).count() == 4


def test_ai_labels_leave_a_humans_overlap_free(reward_run, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2, overlap=1)
    _gapped(queue, reward_run, [1.0, 1.0])
    assistance.queue_assistance_set(queue=queue, reward_run=reward_run)
    assistance.queue_ai_label(queue_id=queue.pk, reward_run_id=reward_run.pk)
    assert label_queue(queue, alice) == 2


def test_it_keeps_ai_labels_out_of_snapshots_unless_asked(agreed_queue, reward_run) -> None:  # type: ignore[no-untyped-def]
    spec = snapshots.SnapshotFilter(queues=[agreed_queue.pk])
    human = snapshots.snapshot_build(name="human", spec=spec, ties="keep")
    assistance.queue_ai_label(queue_id=agreed_queue.pk, reward_run_id=reward_run.pk)

    again = snapshots.snapshot_build(name="human again", spec=spec, ties="keep")
    with_ai = snapshots.snapshot_build(
        name="with ai",
        spec=snapshots.SnapshotFilter(queues=[agreed_queue.pk], include_ai=True),
        ties="keep",
    )

    def lines(snap):  # type: ignore[no-untyped-def]
        # The snapshot's name is part of every exported line (and so of its hash).
        export = b"".join(snapshots.snapshot_export_trl_jsonl(snap)).decode()
        return export.replace(f'"snapshot": "{snap.name}"', "")

    assert lines(again) == lines(human) and again.row_count == 8
    assert "ai:rm-hand" not in again.stats["annotators"]
    assert with_ai.row_count == 12 and "ai:rm-hand" in with_ai.stats["annotators"]
    assert with_ai.content_hash != human.content_hash
    assert with_ai.filters["include_ai"] is True and again.filters["include_ai"] is False
    assert len(with_ai.ranking_ids) == len(again.ranking_ids) + 4


def test_it_builds_snapshots_with_ai_labels_from_the_form_and_the_api(
    agreed_queue, reward_run, client: Client, dave
) -> None:  # type: ignore[no-untyped-def]
    assistance.queue_ai_label(queue_id=agreed_queue.pk, reward_run_id=reward_run.pk)
    client.force_login(dave)
    form = {
        "name": "form",
        "queues": [agreed_queue.pk],
        "aggregation": "all",
        "ties": "keep",
        "min_agreement": 0,
        "eval_fraction": 0,
        "seed": 0,
    }
    assert client.post("/labeling/snapshots/", form).status_code == 302
    assert (
        client.post(
            "/labeling/snapshots/", {**form, "name": "form ai", "include_ai": "on"}
        ).status_code
        == 302
    )
    api = APIClient()
    api.force_authenticate(dave)
    body = {"name": "api ai", "queues": [agreed_queue.pk], "ties": "keep", "include_ai": True}
    created = api.post("/api/labeling/snapshots/", body, format="json")
    assert created.status_code == 201, created.content
    rows = dict(
        DatasetSnapshot.objects.filter(filters__queues=[agreed_queue.pk]).values_list(
            "name", "row_count"
        )
    )
    assert rows == {"form": 8, "form ai": 12, "api ai": 12}


# --- the dashboard and the admin actions ------------------------------------------------------


def test_it_shows_the_reward_models_agreement_to_admins(
    agreed_queue, reward_run, client: Client, carol
) -> None:  # type: ignore[no-untyped-def]
    assistance.queue_ai_label(queue_id=agreed_queue.pk, reward_run_id=reward_run.pk)
    client.force_login(carol)
    body = client.get(f"/labeling/queues/{agreed_queue.pk}/dashboard/").content.decode()
    assert "rm-hand agrees with the annotators: <strong>71%</strong>" in body
    assert "AI labeler vs humans: <strong>100%</strong>" in body
    assert "<th>Agrees with reward model</th>" in body
    assert 'ai:rm-hand <span class="badge"' in body and ">AI</span>" in body
    assert "100% (4/4)" in body  # alice (and the AI) against the reward model


def test_it_shows_nothing_of_the_reward_model_without_scores(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    client.force_login(carol)
    body = client.get(f"/labeling/queues/{queue.pk}/dashboard/").content.decode()
    assert "Agrees with reward model" not in body and "AI labeler vs humans" not in body
    assert 'id="assistance"' in body  # the form to choose one


def test_it_shows_annotators_nothing_of_the_reward_model(
    agreed_queue, reward_run, client: Client
) -> None:  # type: ignore[no-untyped-def]
    assistance.queue_ai_label(queue_id=agreed_queue.pk, reward_run_id=reward_run.pk)
    annotator = UserFactory(username="erin", roles=["annotator"])
    client.force_login(annotator)
    assert client.get(f"/labeling/queues/{agreed_queue.pk}/dashboard/").status_code == 403
    body = client.get(f"/labeling/queues/{agreed_queue.pk}/").content.decode()
    assert "rm-hand" not in body and "reward" not in body.lower() and "ai:" not in body


def test_admins_choose_the_reward_run_and_order_on_the_dashboard(
    reward_run, client: Client, carol
) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    _gapped(queue, reward_run, [0.5, 0.25])
    client.force_login(carol)
    url = f"/labeling/queues/{queue.pk}/assist/"
    response = client.post(url, {"reward_run": reward_run.pk, "task_order": "uncertainty"})
    assert response.status_code == 302
    assert response["Location"] == f"/labeling/queues/{queue.pk}/dashboard/"
    queue.refresh_from_db()
    assert (queue.assistance.reward_run, queue.task_order) == (reward_run, "uncertainty")
    priorities = [p for p in queue.tasks.values_list("priority", flat=True) if p is not None]
    assert len(priorities) == 2 and sorted(priorities) == [0.25, 0.5]
    page = client.get(response["Location"]).content.decode()
    assert "Priorities from rm-hand: 2 of 2 tasks scored." in page
    bad = client.post(url, {"reward_run": "", "task_order": "uncertainty"}, follow=True)
    assert "uncertainty first needs a reward run" in bad.content.decode()
    queue.refresh_from_db()
    assert queue.assistance.reward_run == reward_run  # unchanged


def test_admins_start_the_ai_labeler(reward_run, client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    client.force_login(carol)
    url = f"/labeling/queues/{queue.pk}/ai-label/"
    refused = client.post(url, follow=True)
    assert "choose a reward run for this queue first" in refused.content.decode()
    _assist_with(queue, reward_run)
    response = client.post(url)
    assert response.status_code == 302
    assert _note(queue) == "AI labeler (rm-hand) queued."


@pytest.mark.parametrize("action", ["assist", "ai-label"])
def test_the_actions_are_for_admins_and_posts_only(
    action, reward_run, client: Client, alice, carol, dave
) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    _assist_with(queue, reward_run)
    url = f"/labeling/queues/{queue.pk}/{action}/"
    data = {"reward_run": reward_run.pk, "task_order": "position"}
    for user in (alice, dave):
        client.force_login(user)
        assert client.post(url, data).status_code == 403
    client.force_login(carol)
    assert client.get(url).status_code == 405
    assert client.post(f"/labeling/queues/999999/{action}/", data).status_code == 404
    assert _note(queue) == ""  # nothing happened


# --- end to end with a real reward model --------------------------------------------------------


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained reward model (random score head) saved as a reward run's final/."""
    from training.core.hf import load_reward_model, load_tokenizer

    path = tmp_path_factory.mktemp("reward") / "final"
    tokenizer = load_tokenizer(str(tiny_model_path))
    load_reward_model(str(tiny_model_path), tokenizer, seed=7).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_the_ai_labeler_scores_and_labels_with_a_real_reward_model(
    reward_model_dir: Path, tiny_model_path: Path, alice, carol
) -> None:  # type: ignore[no-untyped-def]
    from training.core.scoring import score_completions

    queue = make_queue(mode="ranking", prompts=2, k=3, overlap=1)
    run = TrainingRunFactory(
        name="rm-tiny",
        kind="reward",
        status="succeeded",
        final_dir=str(reward_model_dir),
        base_model=tiny_policy(tiny_model_path, name="tiny-base"),
    )
    assistance.queue_assistance_set(queue=queue, reward_run=run, task_order="uncertainty")
    assert RewardScoring.objects.get(reward_run=run).status == "queued"  # for the worker

    # On the worker: the queued scoring runs here, then the AI labels every task.
    assert assistance.queue_ai_label(queue_id=queue.pk, reward_run_id=run.pk) == "done"
    assert assistance.queue_assist_finish(queue_id=queue.pk) == "done"

    assert RewardScoring.objects.get(reward_run=run).status == "succeeded"
    rewards = dict(
        CompletionReward.objects.filter(reward_run=run).values_list("completion_id", "reward")
    )
    assert len(rewards) == 6
    # The scores are the reward model's own.
    completions = list(queue.jobs.get().completions.order_by("id"))
    expected = score_completions(
        str(reward_model_dir), [(c.prompt.text, c.text) for c in completions]
    )
    assert [rewards[c.pk] for c in completions] == pytest.approx(expected, abs=1e-5)
    ai = first_row(Ranking.objects.filter(task__queue=queue)).annotator
    assert ai.username == "ai:rm-tiny"
    for task in queue.tasks.all():
        ranking = Ranking.objects.get(task=task, annotator=ai)
        ids = _slots(task)
        assert ranking.order == agreement.order_by_reward({c: rewards[c] for c in ids})
        assert [rewards[g[0]] for g in ranking.order] == sorted(
            (rewards[c] for c in ids), reverse=True
        )
        assert Comparison.objects.filter(ranking=ranking).count() == 3  # 3 choose 2
        assert task.priority == pytest.approx(agreement.reward_gap([rewards[c] for c in ids]))
    # The humans still get every task, in uncertainty order.
    served: list[float] = []
    while (claim := services.task_claim_next(queue=queue, user=alice)) is not None:
        assert claim.task.priority is not None
        served.append(claim.task.priority)
        ids = _slots(claim.task)
        services.ranking_submit(
            assignment_id=claim.pk,
            user=alice,
            submission=services.Submission(order=[[i] for i in ids]),
        )
    assert len(served) == 2 and served == sorted(served)
    board = selectors.queue_dashboard(queue=queue, user=carol)
    assert board.reward is not None and board.reward.humans[1] == 6
    assert board.reward.ai_vs_humans[0][0] == "ai:rm-tiny"


@pytest.mark.celery_worker
@pytest.mark.slow
def test_the_ai_labeler_runs_on_the_training_queue(celery_worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from django.conf import settings

    from tests.conftest import wait_for

    assert settings.CELERY_TASK_ROUTES["training.tasks.queue_ai_label"] == {"queue": "training"}
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    run = TrainingRunFactory(
        name="rm-worker", kind="reward", status="succeeded", final_dir=str(tmp_path)
    )
    _gapped(queue, run, [1.0, 2.0])
    assistance.queue_assistance_set(queue=queue, reward_run=run)

    assistance.queue_ai_label_start(queue=queue)

    wait_for(lambda: Ranking.objects.filter(annotator__username="ai:rm-worker").count() == 2)
    assert wait_for(lambda: "labeled 2 of 2" in _note(queue))


def test_it_names_the_ai_labeler_after_its_run_within_the_username_length() -> None:
    assert assistance.ai_labeler_username(TrainingRun(pk=7, name="rm")) == "ai:rm"
    long_a = assistance.ai_labeler_username(TrainingRun(pk=41, name="x" * 200))
    long_b = assistance.ai_labeler_username(TrainingRun(pk=42, name="x" * 200))
    assert len(long_a) == 150 and long_a.startswith("ai:xxx") and long_a.endswith("~41")
    assert long_a != long_b


def test_it_keeps_the_reward_model_labeler_off_single_answer_queues(reward_run) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=2)
    assistance.queue_assistance_set(queue=queue, reward_run=reward_run)
    with pytest.raises(assistance.AssistError, match="single-answer queue"):
        assistance.queue_ai_label_start(queue=queue)
    assert not Ranking.objects.filter(task__queue=queue).exists()
