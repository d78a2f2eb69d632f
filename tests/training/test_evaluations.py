"""Blind evaluations: services (create, advance, results), pages, API and ``manage.py leaderboard``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from math import comb
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client

from generation.models import Completion, GenerationJob, PolicyModel
from generation.services import generation_job_execute
from labeling.models import AI_LABELER_GROUP, Comparison, LabelingTask
from tests.factories import UserFactory
from tests.generation.factories import PolicyModelFactory, prompt_set_with_prompts
from tests.labeling.factories import label_queue
from tests.training.factories import tiny_policy
from training import evaluations, selectors, tasks
from training.core.ratings import win_rate
from training.models import Evaluation, EvaluationEntry
from training.runs import RunError

HX = {"HX-Request": "true"}
XSS = "<script>alert('x')</script>"


@pytest.fixture
def prompts(db):  # type: ignore[no-untyped-def]
    return prompt_set_with_prompts(3, name="held-out")


def local_models(tmp_path: Path, *names: str) -> list[PolicyModel]:
    # The services only check that a local source exists; only some tests run the weights.
    return [tiny_policy(tmp_path, name=name) for name in names]


def finish_jobs(evaluation: Evaluation, texts: Callable[[int, int], str] | None = None) -> None:
    """Mark every job succeeded with one completion per prompt, without running a model."""
    for entry in EvaluationEntry.objects.filter(evaluation=evaluation).select_related("job"):
        job = entry.job
        for prompt in job.prompt_set.prompts.all():
            text = (
                texts(entry.position, prompt.position)
                if texts
                else f"answer {entry.position} to prompt {prompt.position}"
            )
            Completion.objects.create(
                job=job, prompt=prompt, sample_index=0, text=text, model=entry.model
            )
        GenerationJob.objects.filter(pk=job.pk).update(
            status="succeeded", prompts_done=job.prompts_total
        )


def model_of(completion_id: int) -> int:
    return Completion.objects.get(pk=completion_id).job.evaluation_entry.model_id  # type: ignore[attr-defined, no-any-return]


def prefer(
    ranks: dict[int, int], ties: AbstractSet[frozenset[int]] = frozenset()
) -> Callable[[list[int]], list[list[int]]]:  # type: ignore[assignment]
    """A labeling order: the completion of the model with the lower rank wins; a pair of
    models in ``ties`` is a tie."""

    def order(ids: list[int]) -> list[list[int]]:
        a, b = ids
        ma, mb = model_of(a), model_of(b)
        if frozenset((ma, mb)) in ties:
            return [[a, b]]
        return [[a], [b]] if ranks[ma] < ranks[mb] else [[b], [a]]

    return order


def labeled_evaluation(
    tmp_path: Path, prompts, **kwargs: Any
) -> tuple[Evaluation, list[PolicyModel]]:  # type: ignore[no-untyped-def]
    """Three models (strong > middle > weak, middle ties weak), labeled by two annotators."""
    models = local_models(tmp_path, "strong", "middle", "weak")
    evaluation = evaluations.evaluation_create(
        name="three", models=models, prompt_set=prompts, overlap=2, **kwargs
    )
    finish_jobs(evaluation)
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    ranks = {m.pk: i for i, m in enumerate(models)}
    order = prefer(ranks, ties={frozenset((models[1].pk, models[2].pk))})
    for name in ("ann", "ben"):
        user = UserFactory(username=name, roles=["annotator"])
        assert evaluation.queue is not None
        label_queue(evaluation.queue, user, order)
    return evaluation, models


# --- create -----------------------------------------------------------------------------------


def test_it_creates_one_single_sample_job_per_model(db, tmp_path: Path, prompts, carol) -> None:  # type: ignore[no-untyped-def]
    first, second = local_models(tmp_path, "first", "second")
    evaluation = evaluations.evaluation_create(
        name="pair",
        models=[first, second],
        prompt_set=prompts,
        max_new_tokens=16,
        temperature=0.3,
        seed=7,
        overlap=2,
        user=carol,
    )
    assert evaluation.status == "generating" and evaluation.queue is None
    entries = list(evaluation.entries.order_by("position"))  # type: ignore[attr-defined]
    assert [e.model for e in entries] == [first, second]
    for entry in entries:
        job = entry.job
        assert (job.model, job.prompt_set, job.k) == (entry.model, prompts, 1)
        assert (job.max_new_tokens, job.temperature, job.seed) == (16, 0.3, 7)
        assert job.status == "queued" and job.created_by == carol


@pytest.mark.parametrize(
    "problem, field",
    [
        ("same-model", "models"),
        ("one-model", "models"),
        ("taken-name", "name"),
        ("overlap", "overlap"),
    ],
)
def test_it_validates_the_request(db, tmp_path: Path, prompts, problem: str, field: str) -> None:  # type: ignore[no-untyped-def]
    first, second = local_models(tmp_path, "first", "second")
    kwargs: dict[str, Any] = {"name": "e", "models": [first, second], "prompt_set": prompts}
    if problem == "same-model":
        kwargs["models"] = [first, first]
    elif problem == "one-model":
        kwargs["models"] = [first]
    elif problem == "taken-name":
        evaluations.evaluation_create(**kwargs)
    elif problem == "overlap":
        kwargs["overlap"] = 0
    with pytest.raises(RunError) as caught:
        evaluations.evaluation_create(**kwargs)
    assert caught.value.field == field
    assert Evaluation.objects.count() == (1 if problem == "taken-name" else 0)


def test_it_refuses_models_that_cannot_generate(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    (good,) = local_models(tmp_path, "good")
    gone = PolicyModelFactory(name="gone", source=str(tmp_path / "deleted"))
    served = PolicyModelFactory(name="served", backend="openai", source="", server_url="")
    for bad in (gone, served):
        with pytest.raises(RunError, match=bad.name) as caught:
            evaluations.evaluation_create(name="e", models=[good, bad], prompt_set=prompts)
        assert caught.value.field == "models"
    empty = prompt_set_with_prompts(0, name="empty")
    other = tiny_policy(tmp_path, name="other")
    with pytest.raises(RunError, match="no prompts") as caught:
        evaluations.evaluation_create(name="e", models=[good, other], prompt_set=empty)
    assert caught.value.field == "prompt_set"
    assert not Evaluation.objects.exists() and not GenerationJob.objects.exists()


# --- advance ----------------------------------------------------------------------------------


def test_it_opens_the_blind_queue_only_once_every_job_succeeded(  # type: ignore[no-untyped-def]
    db, tiny_model_path: Path, prompts, carol
) -> None:
    first = tiny_policy(tiny_model_path, name="first")
    second = tiny_policy(tiny_model_path, name="second")
    evaluation = evaluations.evaluation_create(
        name="tiny", models=[first, second], prompt_set=prompts, max_new_tokens=4, user=carol
    )
    jobs = [e.job for e in evaluation.entries.order_by("position")]  # type: ignore[attr-defined]
    assert evaluations.evaluation_advance(evaluation=evaluation).status == "generating"
    assert generation_job_execute(job_id=jobs[0].pk, heartbeat_interval=60) == "succeeded"
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    assert evaluation.status == "generating" and evaluation.queue is None
    assert generation_job_execute(job_id=jobs[1].pk, heartbeat_interval=60) == "succeeded"
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)

    assert evaluation.status == "labeling" and evaluation.error == ""
    queue = evaluation.queue
    assert queue is not None
    assert (queue.mode, queue.pairs_per_prompt, queue.overlap) == ("pairwise", 1, 1)
    assert set(queue.jobs.all()) == set(jobs)
    # The name annotators see says nothing about the models.
    assert "first" not in queue.name and "second" not in queue.name
    tasks_ = list(LabelingTask.objects.filter(queue=queue))
    assert len(tasks_) == 3
    for task in tasks_:
        models = {c.job.model for c in task.completions.select_related("job__model")}
        assert models == {first, second}


def test_it_lets_every_pair_of_models_meet_on_every_prompt(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b", "c", "d")
    evaluation = evaluations.evaluation_create(name="four", models=models, prompt_set=prompts)
    finish_jobs(evaluation)
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    assert evaluation.queue is not None
    assert evaluation.queue.pairs_per_prompt == comb(4, 2)
    met: dict[int, set[frozenset[int | None]]] = {}
    for task in LabelingTask.objects.filter(queue=evaluation.queue):
        pair = frozenset(c.job.model_id for c in task.completions.select_related("job"))
        met.setdefault(task.prompt_id, set()).add(pair)
    assert len(met) == 3
    assert all(len(pairs) == 6 and all(len(p) == 2 for p in pairs) for pairs in met.values())


def test_it_advances_idempotently(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b")
    evaluation = evaluations.evaluation_create(name="e", models=models, prompt_set=prompts)
    finish_jobs(evaluation)
    stale = Evaluation.objects.get(pk=evaluation.pk)  # a second caller's copy, read before
    first = evaluations.evaluation_advance(evaluation=evaluation)
    again = evaluations.evaluation_advance(evaluation=first)
    late = evaluations.evaluation_advance(evaluation=stale)  # loses the conditional UPDATE
    assert first.queue_id == again.queue_id == late.queue_id is not None
    assert Evaluation.objects.get(pk=evaluation.pk).status == "labeling"
    from labeling.models import LabelingQueue

    assert LabelingQueue.objects.count() == 1


def test_it_fails_the_evaluation_when_a_job_failed(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b")
    evaluation = evaluations.evaluation_create(name="e", models=models, prompt_set=prompts)
    job = evaluation.entries.get(position=1).job  # type: ignore[attr-defined]
    GenerationJob.objects.filter(pk=job.pk).update(status="failed", error="out of memory")
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    assert evaluation.status == "failed" and evaluation.queue is None
    assert "out of memory" in evaluation.error and str(job) in evaluation.error
    # Terminal: finishing the other job later changes nothing.
    assert evaluations.evaluation_advance(evaluation=evaluation).status == "failed"


def test_it_fails_the_evaluation_when_the_queue_cannot_be_built(
    db, tmp_path: Path, prompts
) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b")
    evaluation = evaluations.evaluation_create(name="e", models=models, prompt_set=prompts)
    GenerationJob.objects.filter(evaluation_entry__evaluation=evaluation).update(
        status="succeeded"
    )  # succeeded, yet no completions: nothing to compare
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    assert evaluation.status == "failed" and "labeling queue" in evaluation.error
    assert evaluation.queue is None


def test_it_advances_from_the_beat_task(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    assert settings.CELERY_BEAT_SCHEDULE["training-advance-loops"] == {
        "task": "training.tasks.loops_advance",
        "schedule": 30.0,
    }
    models = local_models(tmp_path, "a", "b")
    ready = evaluations.evaluation_create(name="ready", models=models, prompt_set=prompts)
    waiting = evaluations.evaluation_create(name="waiting", models=models, prompt_set=prompts)
    finish_jobs(ready)
    assert tasks.loops_advance() == 1  # the task body, as the worker runs it
    assert Evaluation.objects.get(pk=ready.pk).status == "labeling"
    assert Evaluation.objects.get(pk=waiting.pk).status == "generating"
    assert tasks.loops_advance() == 0


# --- results ----------------------------------------------------------------------------------


def test_it_counts_wins_ties_and_losses_per_pair(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    evaluation, (strong, middle, weak) = labeled_evaluation(tmp_path, prompts)
    results = selectors.evaluation_results(evaluation=evaluation, bootstrap_rounds=200)
    # 3 prompts × 3 pairs × 2 annotators.
    assert results.comparisons == 18
    pairs = {(p.model_a.name, p.model_b.name): p.result for p in results.pairs}
    assert pairs.keys() == {("strong", "middle"), ("strong", "weak"), ("middle", "weak")}
    assert (pairs["strong", "middle"].wins, pairs["strong", "middle"].losses) == (6, 0)
    assert (pairs["middle", "weak"].wins, pairs["middle", "weak"].ties) == (0, 6)
    assert pairs["strong", "weak"] == win_rate(6, 0, 0)
    assert pairs["middle", "weak"].rate == 0.5
    assert pairs["middle", "weak"].low == pytest.approx(win_rate(0, 6, 0).low)


def test_it_orders_the_leaderboard_by_bradley_terry_rating(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    evaluation, (strong, middle, weak) = labeled_evaluation(tmp_path, prompts)
    results = selectors.evaluation_results(evaluation=evaluation, bootstrap_rounds=200)
    board = results.leaderboard
    assert [row.model for row in board][0] == strong
    assert {row.model for row in board[1:]} == {middle, weak}
    assert board[1].rating == pytest.approx(board[2].rating)  # they only tied each other
    assert sum(row.rating for row in board) == pytest.approx(3000)
    top = board[0]
    assert (top.wins, top.ties, top.losses) == (12, 0, 0) and top.rank == 1
    for row in board:
        assert row.low <= row.rating <= row.high
    # The matrix is in leaderboard order: the winner's row is all 100%.
    winner, below = results.matrix[0], results.matrix[1][0]
    assert [cell.rate if cell is not None else None for cell in winner[1:]] == [1.0, 1.0]
    assert winner[0] is None and below is not None and below.rate == 0.0
    # Seeded bootstrap: the same page twice shows the same intervals.
    again = selectors.evaluation_results(evaluation=evaluation, bootstrap_rounds=200)
    assert [(r.low, r.high) for r in again.leaderboard] == [(r.low, r.high) for r in board]


def test_it_leaves_the_ai_labeler_out_of_the_results(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    evaluation, (strong, middle, weak) = labeled_evaluation(tmp_path, prompts)
    assert evaluation.queue is not None
    evaluation.queue.overlap = 3
    evaluation.queue.save(update_fields=["overlap"])
    robot = UserFactory(username="rm-judge", roles=["annotator"])
    robot.groups.add(Group.objects.get_or_create(name=AI_LABELER_GROUP)[0])
    reversed_order = prefer({weak.pk: 0, middle.pk: 1, strong.pk: 2})
    assert evaluation.queue is not None
    assert label_queue(evaluation.queue, robot, reversed_order) == 9
    assert Comparison.objects.filter(queue=evaluation.queue).count() == 27
    results = selectors.evaluation_results(evaluation=evaluation, bootstrap_rounds=100)
    assert results.comparisons == 18 and results.leaderboard[0].model == strong


def test_it_has_no_results_before_any_label(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b")
    evaluation = evaluations.evaluation_create(name="e", models=models, prompt_set=prompts)
    results = selectors.evaluation_results(evaluation=evaluation, bootstrap_rounds=50)
    assert results.comparisons == 0
    assert [row.rating for row in results.leaderboard] == [1000.0, 1000.0]
    assert all(p.result.rate is None for p in results.pairs)


# --- pages ------------------------------------------------------------------------------------


def form_data(models: list[PolicyModel], prompts, **overrides: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    data = {
        "name": "web",
        "models": [m.pk for m in models],
        "prompt_set": prompts.pk,
        "max_new_tokens": 8,
        "temperature": 0.5,
        "seed": 3,
        "overlap": 1,
    }
    return data | overrides


def test_it_keeps_annotators_out(client: Client, alice, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "secret-a", "secret-b")
    evaluation = evaluations.evaluation_create(name="e", models=models, prompt_set=prompts)
    finish_jobs(evaluation)
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    client.force_login(alice)
    for url in ["/training/evaluations/", evaluation.get_absolute_url(), "/training/rounds/"]:
        assert client.get(url).status_code == 403, url
    assert client.post("/training/evaluations/", form_data(models, prompts)).status_code == 403
    for url in [
        "/api/training/evaluations/",
        f"/api/training/evaluations/{evaluation.pk}/",
        f"/api/training/evaluations/{evaluation.pk}/leaderboard/",
    ]:
        assert client.get(url).status_code == 404, url
    # What annotators do see, the labeling page, names no model.
    page = client.get(f"/labeling/queues/{evaluation.queue_id}/").content.decode()
    assert "answer " in page  # a task is shown...
    assert not any(m.name in page for m in models)  # ...without its models' names


def test_it_keeps_researchers_read_only(client: Client, dave, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    evaluation, models = labeled_evaluation(tmp_path, prompts)
    client.force_login(dave)
    listing = client.get("/training/evaluations/")
    assert listing.status_code == 200 and "three" in listing.content.decode()
    assert 'id="evaluation-form"' not in listing.content.decode()
    detail = client.get(evaluation.get_absolute_url())
    assert detail.status_code == 200 and 'id="leaderboard"' in detail.content.decode()
    assert client.post("/training/evaluations/", form_data(models, prompts)).status_code == 403
    assert client.post("/api/training/evaluations/", form_data(models, prompts)).status_code == 403
    assert Evaluation.objects.count() == 1


def test_it_lets_admins_create_an_evaluation(
    client: Client, carol, tmp_path: Path, prompts
) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b")
    client.force_login(carol)
    assert 'id="evaluation-form"' in client.get("/training/evaluations/").content.decode()
    response = client.post("/training/evaluations/", form_data(models, prompts))
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302 and response["Location"] == evaluation.get_absolute_url()
    assert (evaluation.name, evaluation.max_new_tokens, evaluation.seed) == ("web", 8, 3)
    assert evaluation.created_by == carol and evaluation.entries.count() == 2  # type: ignore[attr-defined]


def test_it_shows_form_errors(client: Client, carol, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b")
    client.force_login(carol)
    one = client.post("/training/evaluations/", form_data(models[:1], prompts))
    assert one.status_code == 400 and "at least two" in one.content.decode()
    evaluations.evaluation_create(name="web", models=models, prompt_set=prompts)
    taken = client.post("/training/evaluations/", form_data(models, prompts))
    assert taken.status_code == 400 and "already exists" in taken.content.decode()
    assert Evaluation.objects.count() == 1


def test_it_rejects_wrong_methods(client: Client, carol, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    evaluation, _ = labeled_evaluation(tmp_path, prompts)
    client.force_login(carol)
    assert client.delete("/training/evaluations/").status_code == 405
    assert client.post(evaluation.get_absolute_url()).status_code == 405
    assert client.post("/training/rounds/").status_code == 405
    assert (
        client.delete(f"/api/training/evaluations/{evaluation.pk}/leaderboard/").status_code == 405
    )


def test_it_answers_a_missing_evaluation_with_404(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    client.force_login(dave)
    assert client.get("/training/evaluations/999/").status_code == 404
    assert client.get("/api/training/evaluations/999/leaderboard/").status_code == 404


def test_it_shows_the_leaderboard_chart_and_matrix(
    client: Client, dave, tmp_path: Path, prompts
) -> None:  # type: ignore[no-untyped-def]
    evaluation, (strong, middle, weak) = labeled_evaluation(tmp_path, prompts)
    client.force_login(dave)
    html = client.get(evaluation.get_absolute_url()).content.decode()
    board = html[html.index('id="leaderboard"') :]
    assert board.index("strong") < board.index("middle")
    assert 'id="leaderboard-chart"' in html and "js/evaluation.js" in html
    assert 'id="winrate-matrix"' in html and "100%" in html
    chart = json.loads(
        html.split('id="leaderboard-data" type="application/json">')[1].split("</script>")[0]
    )
    assert chart["labels"][0] == "strong" and len(chart["low"]) == 3
    assert "18</strong> comparisons so far" in html


def test_it_advances_on_page_load_and_polls_while_generating(
    client: Client, carol, tmp_path: Path, prompts
) -> None:  # type: ignore[no-untyped-def]
    models = local_models(tmp_path, "a", "b")
    evaluation = evaluations.evaluation_create(name="e", models=models, prompt_set=prompts)
    client.force_login(carol)
    partial = client.get(evaluation.get_absolute_url(), headers=HX).content.decode()
    assert partial.lstrip().startswith("{#") or partial.lstrip().startswith("<section")
    assert "<html" not in partial and 'hx-trigger="every 3s"' in partial
    assert "No labels yet" in client.get(evaluation.get_absolute_url()).content.decode()
    finish_jobs(evaluation)
    partial = client.get(evaluation.get_absolute_url(), headers=HX).content.decode()
    assert "hx-trigger" not in partial and "Blind evaluation #" in partial
    assert Evaluation.objects.get(pk=evaluation.pk).status == "labeling"


def test_it_escapes_model_names(client: Client, carol, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    models = [tiny_policy(tmp_path, name=XSS), tiny_policy(tmp_path, name="plain")]
    evaluation = evaluations.evaluation_create(
        name=f"{XSS} eval", models=models, prompt_set=prompts
    )
    finish_jobs(evaluation)
    evaluations.evaluation_advance(evaluation=evaluation)
    evaluation.refresh_from_db()
    assert evaluation.queue is not None
    label_queue(evaluation.queue, UserFactory(username="ann", roles=["annotator"]))
    client.force_login(carol)
    for url in ["/training/evaluations/", evaluation.get_absolute_url()]:
        html = client.get(url).content.decode()
        assert XSS not in html, url
        assert "&lt;script&gt;" in html
    html = client.get(evaluation.get_absolute_url()).content.decode()
    assert "\\u003Cscript\\u003E" in html  # the chart's JSON island


# --- API and command --------------------------------------------------------------------------


def test_it_serves_evaluations_and_leaderboards_over_the_api(
    client: Client, dave, carol, tmp_path: Path, prompts
) -> None:  # type: ignore[no-untyped-def]
    evaluation, (strong, middle, weak) = labeled_evaluation(tmp_path, prompts)
    client.force_login(dave)
    listing = client.get("/api/training/evaluations/").json()["results"]
    assert [e["name"] for e in listing] == ["three"]
    assert [m["name"] for m in listing[0]["models"]] == ["strong", "middle", "weak"]
    assert listing[0]["status"] == "labeling" and listing[0]["labels"] == 18
    board = client.get(f"/api/training/evaluations/{evaluation.pk}/leaderboard/").json()
    assert board["comparisons"] == 18 and board["leaderboard"][0]["model_name"] == "strong"
    top = board["leaderboard"][0]
    assert top["ci_low"] <= top["rating"] <= top["ci_high"] and top["wins"] == 12
    pair = next(
        p for p in board["pairs"] if p["model_a"] == strong.pk and p["model_b"] == middle.pk
    )
    assert (pair["wins"], pair["ties"], pair["losses"], pair["win_rate"]) == (6, 0, 0, 1.0)

    client.force_login(carol)
    other = local_models(tmp_path, "x", "y")
    created = client.post(
        "/api/training/evaluations/",
        {"name": "api", "models": [m.pk for m in other], "prompt_set": prompts.pk},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "generating" and len(created.json()["jobs"]) == 2
    bad = client.post(
        "/api/training/evaluations/",
        {"name": "bad", "models": [other[0].pk], "prompt_set": prompts.pk},
        content_type="application/json",
    )
    assert bad.status_code == 400 and bad.json()["field"] == "models"


def test_it_prints_the_leaderboard_from_the_command(db, tmp_path: Path, prompts) -> None:  # type: ignore[no-untyped-def]
    evaluation, _ = labeled_evaluation(tmp_path, prompts)
    for key in (str(evaluation.pk), "three"):
        out = io.StringIO()
        call_command("leaderboard", key, "--rounds", "100", stdout=out)
        text = out.getvalue()
        assert "three (labeling): 18 comparisons" in text
        lines = [line for line in text.splitlines() if line.strip().startswith(("1 ", "2 ", "3 "))]
        assert [line.split()[1] for line in lines][0] == "strong"
        assert "strong vs middle: 1.000" in text and "6-0-0 (W-T-L)" in text
    out = io.StringIO()
    call_command("leaderboard", "three", "--json", "--rounds", "50", stdout=out)
    assert json.loads(out.getvalue())["leaderboard"][0]["model_name"] == "strong"
    with pytest.raises(CommandError, match="no evaluation"):
        call_command("leaderboard", "nope")
