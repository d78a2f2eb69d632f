"""The next round after a policy run, "compare with the parent", and the rounds timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from generation.models import Completion, GenerationJob
from generation.services import generation_job_execute
from labeling import snapshots
from labeling.models import LabelingQueue
from tests.generation.factories import PolicyModelFactory, prompt_set_with_prompts
from tests.labeling.factories import label_queue, make_queue
from tests.training.factories import TrainingRunFactory, labeled_snapshot, tiny_policy
from training import evaluations, rounds, runs, selectors
from training.models import Evaluation, Round, TrainingRun
from training.runs import RunError

FEW_STEPS = {"max_steps": 2, "logging_steps": 1, "max_length": 64, "batch_size": 2}
PREVIOUS: dict[str, Any] = {
    "mode": "ranking",
    "ask_scores": True,
    "overlap": 2,
    "pairs_per_prompt": 2,
    "guidelines": "Prefer the kinder answer.",
    "lease_seconds": 600,
}


@pytest.fixture
def finished_dpo(db, tiny_model_path: Path, tmp_path: Path, settings, alice) -> TrainingRun:  # type: ignore[no-untyped-def]
    """A DPO run trained (2 steps, on the tiny model) on a queue with unusual settings."""
    settings.PREFLAB_DATA_DIR = tmp_path
    queue = make_queue(prompts=3, k=3, name="round 1", **PREVIOUS)
    queue.annotators.set([alice])
    label_queue(queue, alice)
    snapshot = snapshots.snapshot_build(
        name="round 1 labels", spec=snapshots.SnapshotFilter(queues=[queue.pk])
    )
    base = tiny_policy(tiny_model_path, name="tiny-base")
    run = runs.training_run_create(
        kind="dpo", base_model=base, snapshot=snapshot, config=FEW_STEPS, name="dpo round 1"
    )
    assert runs.training_run_execute(run_id=run.pk, heartbeat_interval=60) == "succeeded"
    run.refresh_from_db()
    assert run.output_model is not None
    return run


def test_it_runs_the_next_round_end_to_end(  # type: ignore[no-untyped-def]
    client: Client, carol, alice, finished_dpo: TrainingRun
) -> None:
    run = finished_dpo
    previous = LabelingQueue.objects.get(name="round 1")
    previous_job = previous.jobs.get()
    client.force_login(carol)
    # The run page offers the action; its form starts from the previous queue's job.
    assert (
        f"/training/runs/{run.pk}/next-round/"
        in client.get(run.get_absolute_url()).content.decode()
    )
    form = client.get(f"/training/runs/{run.pk}/next-round/")
    assert form.status_code == 200
    html = form.content.decode()
    assert "round 1" in html and "Prefer" not in html  # names the queue, not its guidelines
    assert form.context["form"].initial["prompt_set"] == previous_job.prompt_set
    assert form.context["form"].initial["k"] == previous_job.k

    held_out = prompt_set_with_prompts(2, name="round 2 prompts")
    response = client.post(
        f"/training/runs/{run.pk}/next-round/",
        {"prompt_set": held_out.pk, "k": 2, "max_new_tokens": 4, "name": "round 2"},
    )
    assert response.status_code == 302 and response["Location"] == "/training/rounds/"
    next_round = Round.objects.get()
    job = next_round.job
    assert (job.model, job.prompt_set, job.k, job.max_new_tokens) == (
        run.output_model,
        held_out,
        2,
        4,
    )
    assert next_round.status == "generating" and next_round.queue is None
    assert next_round.previous_queue == previous

    assert generation_job_execute(job_id=job.pk, heartbeat_interval=60) == "succeeded"
    # The rounds page advances rounds whose job is done (the beat task does too).
    page = client.get("/training/rounds/")
    assert page.status_code == 200
    next_round.refresh_from_db()
    assert next_round.status == "labeling" and next_round.error == ""
    queue = next_round.queue
    assert queue is not None and queue.name == "round 2"
    for key, value in PREVIOUS.items():
        assert getattr(queue, key) == value, key
    assert list(queue.annotators.all()) == [alice]
    assert list(queue.jobs.all()) == [job]
    completions = Completion.objects.filter(job=job)
    assert completions.count() == 4
    assert {c.model for c in completions} == {run.output_model}
    assert queue.tasks.count() == 2  # ranking mode: one task per prompt
    assert rounds.round_advance(round=next_round).queue == queue  # idempotent

    # The timeline: the base model, then the DPO model with its run, data and next round.
    html = client.get("/training/rounds/").content.decode()
    timeline = html[html.index('id="rounds-timeline"') :]
    assert (
        timeline.index("tiny-base")
        < timeline.index(run.output_model.name)
        < timeline.index("round 2")
    )
    assert "dpo round 1" in timeline and "round 1 labels" in timeline
    assert f"{run.snapshot.row_count} rows" in timeline


def test_it_compares_the_new_model_with_its_parent(  # type: ignore[no-untyped-def]
    client: Client, carol, bob, finished_dpo: TrainingRun
) -> None:
    run = finished_dpo
    held_out = prompt_set_with_prompts(2, name="held-out")
    client.force_login(carol)
    assert "Compare with the parent" in client.get(run.get_absolute_url()).content.decode()
    assert client.get(f"/training/runs/{run.pk}/compare-parent/").status_code == 405
    response = client.post(
        f"/training/runs/{run.pk}/compare-parent/",
        {"prompt_set": held_out.pk, "max_new_tokens": 4},
    )
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302 and response["Location"] == evaluation.get_absolute_url()
    entries = list(evaluation.entries.order_by("position"))  # type: ignore[attr-defined]
    assert [e.model for e in entries] == [run.output_model, run.base_model]
    for entry in entries:
        assert generation_job_execute(job_id=entry.job_id, heartbeat_interval=60) == "succeeded"
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    assert evaluation.status == "labeling"

    new_model = run.output_model

    def prefer_new(ids: list[int]) -> list[list[int]]:
        first = Completion.objects.get(pk=ids[0])
        return [[ids[0]], [ids[1]]] if first.model == new_model else [[ids[1]], [ids[0]]]

    assert evaluation.queue is not None and new_model is not None
    assert label_queue(evaluation.queue, bob, prefer_new) == 2
    rate, found = selectors.models_win_rate(model=new_model, other=run.base_model)
    assert found == evaluation and (rate.wins, rate.losses, rate.rate) == (2, 0, 1.0)
    html = client.get("/training/rounds/").content.decode()
    assert "<strong>1.000</strong>" in html and evaluation.name in html


def test_it_shows_the_reward_model_accuracy_behind_a_ppo_round(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = PolicyModelFactory(name="base")
    snapshot = labeled_snapshot(prompts=2, k=2)
    reward = TrainingRunFactory(
        kind="reward",
        status="succeeded",
        snapshot=snapshot,
        eval_metrics={"eval/rewards/accuracies": 0.75, "eval/loss": 0.5},
    )
    child = PolicyModelFactory(name="ppo child", parent=base)
    ppo = TrainingRunFactory(
        kind="ppo",
        status="succeeded",
        base_model=base,
        snapshot=snapshot,
        reward_run=reward,
        output_model=child,
    )
    grandchild = PolicyModelFactory(name="dpo grandchild", parent=child)
    TrainingRunFactory(
        kind="dpo", status="succeeded", base_model=child, snapshot=snapshot, output_model=grandchild
    )
    PolicyModelFactory(name="unrelated")  # never trained from: not part of any lineage
    timeline = selectors.rounds_timeline()
    assert [(e.model.name, e.depth) for e in timeline] == [
        ("base", 0),
        ("ppo child", 1),
        ("dpo grandchild", 2),
    ]
    assert timeline[0].run is None and timeline[1].run == ppo
    assert timeline[1].reward_accuracy == 0.75 and timeline[2].reward_accuracy is None
    assert timeline[1].vs_parent is None


# --- guards -----------------------------------------------------------------------------------


def test_it_refuses_a_next_round_without_a_policy_model(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompts = prompt_set_with_prompts(2)
    reward = TrainingRunFactory(kind="reward", status="succeeded", final_dir=str(tmp_path))
    running = TrainingRunFactory(kind="dpo", status="running")
    jobs = GenerationJob.objects.count()  # the snapshots' labeled jobs
    for run in (reward, running):
        with pytest.raises(RunError):
            rounds.round_create(run=run, prompt_set=prompts)
        with pytest.raises(RunError):
            evaluations.evaluation_create_for_run(run=run, prompt_set=prompts)
    assert not Round.objects.exists() and not Evaluation.objects.exists()
    assert GenerationJob.objects.count() == jobs


def test_it_checks_k_and_the_prompt_set(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tiny_policy(tmp_path, name="trained")
    run = TrainingRunFactory(kind="dpo", status="succeeded", output_model=model)
    # The factory's snapshot names a queue whose job has 2 completions per prompt.
    defaults = rounds.round_defaults(run=run)
    assert defaults["k"] == 2 and defaults["prompt_set"] is not None
    with pytest.raises(RunError) as caught:
        rounds.round_create(run=run, k=1)
    assert caught.value.field == "k"
    run.snapshot.filters = {"queues": []}
    run.snapshot.save(update_fields=["filters"])
    with pytest.raises(RunError) as caught:
        rounds.round_create(run=run)
    assert caught.value.field == "prompt_set"
    # Without a previous queue, the queue takes the default settings.
    prompts = prompt_set_with_prompts(2)
    next_round = rounds.round_create(run=run, prompt_set=prompts, k=3, max_new_tokens=8)
    assert next_round.previous_queue is None
    assert next_round.queue_settings["mode"] == "pairwise"
    # Named without the model's name: annotators see queue names, and rounds are blind.
    assert next_round.queue_settings["name"] == "Next round · labeling"


def test_it_fails_the_round_when_its_job_failed(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tiny_policy(tmp_path, name="trained")
    run = TrainingRunFactory(kind="dpo", status="succeeded", output_model=model)
    next_round = rounds.round_create(run=run)
    GenerationJob.objects.filter(pk=next_round.job_id).update(status="cancelled")
    next_round = rounds.round_advance(round=next_round)
    assert next_round.status == "failed" and "cancelled" in next_round.error
    assert next_round.queue is None


def test_it_keeps_the_next_round_form_for_admins(  # type: ignore[no-untyped-def]
    client: Client, dave, alice, carol, tmp_path: Path
) -> None:
    model = tiny_policy(tmp_path, name="trained")
    run = TrainingRunFactory(kind="dpo", status="succeeded", output_model=model)
    url = f"/training/runs/{run.pk}/next-round/"
    client.force_login(dave)
    assert client.get(url).status_code == 403
    assert client.post(f"/training/runs/{run.pk}/compare-parent/").status_code == 403
    assert client.get("/training/rounds/").status_code == 200
    page = client.get(run.get_absolute_url()).content.decode()
    assert "Next round" not in page and "Compare with the parent" not in page
    client.force_login(alice)
    assert client.get(url).status_code == 403
    client.force_login(carol)
    assert client.get("/training/runs/999/next-round/").status_code == 404
    assert client.delete(url).status_code == 405
    bad = client.post(url, {"k": 1, "max_new_tokens": 4})
    assert bad.status_code == 400 and not Round.objects.exists()


def test_it_copies_the_human_queue_not_the_paused_import_queue(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tiny_policy(tmp_path, name="trained")
    run = TrainingRunFactory(kind="dpo", status="succeeded", output_model=model)
    imported = make_queue(prompts=1, k=2, name="HH import", mode="pairwise")
    LabelingQueue.objects.filter(pk=imported.pk).update(is_active=False)
    human = make_queue(prompts=1, k=2, name="HH: pick the better", mode="ranking", overlap=2)
    # The import queue comes first in the snapshot's filter, as the demo's snapshot has it.
    run.snapshot.filters = {"queues": [imported.pk, human.pk]}
    run.snapshot.save(update_fields=["filters"])
    assert rounds.run_previous_queue(run=run) == human
    next_round = rounds.round_create(run=run)
    assert next_round.previous_queue == human
    assert next_round.queue_settings["mode"] == "ranking"
    assert next_round.queue_settings["overlap"] == 2
    assert next_round.queue_settings["name"] == "Next round · HH: pick the better"
    assert "trained" not in next_round.queue_settings["name"]  # no model name for annotators


def test_it_names_a_round_after_a_round_without_nesting(db) -> None:  # type: ignore[no-untyped-def]
    first = make_queue(prompts=1, k=2, name="Next round · chat")
    assert rounds.next_round_queue_name(first) == "Next round · chat (2)"
    assert rounds.next_round_queue_name(None) == "Next round · labeling"
