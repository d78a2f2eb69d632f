"""GRPO runs and reward runs' score statistics over the REST API."""

from __future__ import annotations

from pathlib import Path

from tests.training.factories import TrainingRunFactory
from tests.training.test_api import RUNS, _client, base, data_dir, snapshot  # noqa: F401
from training.models import TrainingRun


def _reward_run(tmp_path: Path) -> TrainingRun:
    final = tmp_path / "reward-final"
    final.mkdir()
    return TrainingRunFactory(  # type: ignore[no-any-return]
        kind="reward",
        status="succeeded",
        final_dir=str(final),
        reward_stats={"mean": 0.5, "std": 2.0, "count": 7, "reference": "chosen"},
    )


def test_it_launches_a_grpo_run_with_its_settings(carol, base, snapshot, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    reward = _reward_run(tmp_path)
    api = _client(carol)
    body = {"kind": "grpo", "base_model": base.pk, "snapshot": snapshot.pk, "reward_run": reward.pk}

    created = api.post(RUNS, {**body, "config": {"advantage": "rloo"}}, format="json")

    assert created.status_code == 201, created.content
    run = TrainingRun.objects.get(pk=created.json()["id"])
    assert (run.kind, run.reward_run) == ("grpo", reward)
    assert run.config["advantage"] == "rloo" and run.config["rollout_k"] == 4
    assert "vf_coef" not in run.config


def test_it_names_the_field_a_grpo_run_gets_wrong(carol, base, snapshot, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    reward = _reward_run(tmp_path)
    api = _client(carol)
    body = {"kind": "grpo", "base_model": base.pk, "snapshot": snapshot.pk}

    no_reward = api.post(RUNS, body, format="json")
    one_sample = api.post(
        RUNS, {**body, "reward_run": reward.pk, "config": {"rollout_k": 1}}, format="json"
    )
    ppo_field = api.post(
        RUNS, {**body, "reward_run": reward.pk, "config": {"vf_coef": 0.1}}, format="json"
    )

    assert no_reward.status_code == 400 and "reward_run" in no_reward.json()
    assert one_sample.status_code == 400 and "rollout_k" in one_sample.json()
    assert ppo_field.status_code == 400 and "vf_coef" in str(ppo_field.json())
    assert not TrainingRun.objects.filter(kind="grpo").exists()


def test_it_shows_a_reward_runs_score_statistics(dave, tmp_path) -> None:  # type: ignore[no-untyped-def]
    reward = _reward_run(tmp_path)

    body = _client(dave).get(f"{RUNS}{reward.pk}/").json()

    assert body["reward_stats"] == {"mean": 0.5, "std": 2.0, "count": 7, "reference": "chosen"}
