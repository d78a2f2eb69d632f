"""The training REST API: researchers read, admins write, annotators get 404s."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.generation.factories import PolicyModelFactory
from tests.labeling.factories import finished_job
from tests.training.factories import TrainingRunFactory, labeled_snapshot, tiny_policy
from training.models import RewardScoring, TrainingMetric, TrainingRun

RUNS = "/api/training/runs/"


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.PREFLAB_DATA_DIR = tmp_path / "data"
    return settings.PREFLAB_DATA_DIR


def _client(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def base(db, tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "weights"
    folder.mkdir()
    return tiny_policy(folder)


@pytest.fixture
def snapshot(db):  # type: ignore[no-untyped-def]
    return labeled_snapshot(prompts=2, k=3, name="prefs")


def _create(api: APIClient, base, snapshot, **extra):  # type: ignore[no-untyped-def]
    body = {"kind": "dpo", "base_model": base.pk, "snapshot": snapshot.pk, **extra}
    return api.post(RUNS, body, format="json")


def test_it_requires_authentication(db) -> None:  # type: ignore[no-untyped-def]
    assert APIClient().get(RUNS).status_code == 401


def test_it_hides_runs_from_annotators(alice, base, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(base_model=base, snapshot=snapshot)
    api = _client(alice)
    for url in (RUNS, f"{RUNS}{run.pk}/", f"{RUNS}{run.pk}/metrics/", "/api/training/scorings/"):
        assert api.get(url).status_code == 404, url
    assert _create(api, base, snapshot).status_code == 404
    assert api.post(f"{RUNS}{run.pk}/cancel/").status_code == 404


def test_it_lets_researchers_read_but_not_write(dave, base, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(base_model=base, snapshot=snapshot)
    api = _client(dave)
    assert [r["id"] for r in api.get(RUNS).json()["results"]] == [run.pk]
    assert api.get(f"{RUNS}{run.pk}/").json()["name"] == run.name
    assert _create(api, base, snapshot).status_code == 403
    assert api.post(f"{RUNS}{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.QUEUED
    assert not TrainingRun.objects.exclude(pk=run.pk).exists()


def test_it_creates_a_run_for_an_admin(carol, base, snapshot, data_dir) -> None:  # type: ignore[no-untyped-def]
    response = _create(
        _client(carol), base, snapshot, name="first dpo", notes="beta sweep", config={"beta": 0.3}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    run = TrainingRun.objects.get(pk=body["id"])
    assert body["status"] == "queued" and body["config"]["beta"] == 0.3
    assert run.name == "first dpo" and run.notes == "beta sweep" and run.created_by == carol
    assert body["artifacts_dir"] == str(data_dir / "runs" / str(run.pk))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"config": {"learning_rate": 0}}, "learning_rate"),
        ({"config": {"nope": 1}}, "nope"),
        ({"kind": "ppo"}, "reward_run"),
        ({"kind": "a2c"}, "kind"),
        ({"config": "not an object"}, "config"),
    ],
)
def test_it_names_the_field_at_fault(carol, base, snapshot, extra, field) -> None:  # type: ignore[no-untyped-def]
    response = _create(_client(carol), base, snapshot, **extra)
    assert response.status_code == 400
    assert field in response.json()
    assert not TrainingRun.objects.exists()


def test_it_refuses_a_model_behind_an_http_server(carol, snapshot) -> None:  # type: ignore[no-untyped-def]
    served = PolicyModelFactory(backend="openai", server_url="http://x/v1", server_model="m")
    response = _create(_client(carol), served, snapshot)
    assert response.status_code == 400
    assert response.json()["field"] == "base_model"
    assert "OpenAI-compatible" in response.json()["detail"]


def test_it_filters_runs_by_kind_and_status(dave, base, snapshot) -> None:  # type: ignore[no-untyped-def]
    dpo = TrainingRunFactory(kind="dpo", base_model=base, snapshot=snapshot, status="running")
    sft = TrainingRunFactory(kind="sft", base_model=base, snapshot=snapshot, status="failed")
    api = _client(dave)

    def ids(query: str) -> set[int]:
        return {r["id"] for r in api.get(f"{RUNS}?{query}").json()["results"]}

    assert ids("") == {dpo.pk, sft.pk}
    assert ids("kind=dpo") == {dpo.pk}
    assert ids("status=failed") == {sft.pk}
    assert ids("kind=dpo&status=failed") == set()


def test_it_cancels_and_resumes_for_an_admin(carol, base, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(base_model=base, snapshot=snapshot, status="running")
    api = _client(carol)
    response = api.post(f"{RUNS}{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    conflict = api.post(f"{RUNS}{run.pk}/resume/")
    assert conflict.status_code == 409 and "cannot be resumed" in conflict.json()["detail"]
    TrainingRun.objects.filter(pk=run.pk).update(status="cancelled")
    resumed = api.post(f"{RUNS}{run.pk}/resume/")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    assert api.get(f"{RUNS}{run.pk}/cancel/").status_code == 405


def test_it_serves_the_curves_after_a_step(dave, base, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(base_model=base, snapshot=snapshot)
    TrainingMetric.objects.create(run=run, step=1, values={"loss": 1.0})
    TrainingMetric.objects.create(run=run, step=2, values={"loss": 0.5, "rewards/margins": 0.1})
    TrainingMetric.objects.create(run=run, step=3, values={"loss": None})
    api = _client(dave)
    body = api.get(f"{RUNS}{run.pk}/metrics/").json()
    assert body["steps"] == [1, 2, 3]
    assert body["metrics"] == {"loss": [1.0, 0.5, None], "rewards/margins": [None, 0.1, None]}
    later = api.get(f"{RUNS}{run.pk}/metrics/?after=1").json()
    assert later["steps"] == [2, 3] and later["metrics"]["loss"] == [0.5, None]
    assert api.get(f"{RUNS}{run.pk}/metrics/?after=x").status_code == 400
    assert api.get(f"{RUNS}999999/metrics/").status_code == 404


def test_it_queues_and_lists_reward_scorings(carol, dave, base, snapshot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    final = tmp_path / "final"
    final.mkdir()
    reward = TrainingRunFactory(
        kind="reward", base_model=base, snapshot=snapshot, status="succeeded", final_dir=final
    )
    job = finished_job(prompts=2, k=2)
    body = {"reward_run": reward.pk, "job": job.pk}
    assert _client(dave).post("/api/training/scorings/", body, format="json").status_code == 403
    created = _client(carol).post("/api/training/scorings/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["total"] == 4 and created.json()["status"] == "queued"
    listed = _client(dave).get(f"/api/training/scorings/?job={job.pk}").json()["results"]
    assert [s["id"] for s in listed] == [RewardScoring.objects.get().pk]
    dpo = TrainingRunFactory(kind="dpo", base_model=base, snapshot=snapshot, status="succeeded")
    bad = _client(carol).post(
        "/api/training/scorings/", {"reward_run": dpo.pk, "job": job.pk}, format="json"
    )
    assert bad.status_code == 400 and bad.json()["field"] == "reward_run"


def test_it_cancels_and_resumes_a_reward_scoring_for_an_admin(  # type: ignore[no-untyped-def]
    alice, carol, dave, base, snapshot, tmp_path
) -> None:
    final = tmp_path / "final"
    final.mkdir()
    reward = TrainingRunFactory(
        kind="reward", base_model=base, snapshot=snapshot, status="succeeded", final_dir=final
    )
    scoring = RewardScoring.objects.create(
        reward_run=reward, job=finished_job(prompts=1, k=2), status="running", total=2
    )
    url = f"/api/training/scorings/{scoring.pk}/"
    assert _client(alice).post(f"{url}cancel/").status_code == 404
    assert _client(dave).post(f"{url}cancel/").status_code == 403
    api = _client(carol)
    assert api.get(f"{url}cancel/").status_code == 405
    flagged = api.post(f"{url}cancel/")
    assert flagged.status_code == 200 and flagged.json()["cancel_requested"] is True
    conflict = api.post(f"{url}resume/")
    assert (
        conflict.status_code == 409
        and "a running scoring cannot be resumed" in conflict.json()["detail"]
    )
    RewardScoring.objects.filter(pk=scoring.pk).update(status="cancelled", cancel_requested=False)
    resumed = api.post(f"{url}resume/")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    assert api.post("/api/training/scorings/999999/cancel/").status_code == 404
