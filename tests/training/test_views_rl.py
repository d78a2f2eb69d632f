"""The PPO/GRPO run page's watch on its reward model, the GRPO launch form, a reward run's
score statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.training.factories import TrainingRunFactory, labeled_snapshot, tiny_policy
from tests.training.test_views_runs import HX, field_block, reward_run
from training.models import TrainingMetric, TrainingRun


@pytest.fixture
def model(db, tmp_path: Path):  # type: ignore[no-untyped-def]
    return tiny_policy(tmp_path, name="tiny")


def _rl_run(tmp_path: Path, kind: str = "grpo", **fields: Any) -> TrainingRun:
    reward = reward_run(tmp_path, name="rm", eval_metrics={"eval/rewards/accuracies": 0.62})
    return TrainingRunFactory(  # type: ignore[no-any-return]
        kind=kind,
        reward_run=reward,
        status=fields.pop("status", TrainingRun.Status.RUNNING),
        config={"kl_target": 6.0},
        **fields,
    )


def _report(
    run: TrainingRun, score: list[float], kl: list[float], length: list[float], **extra: float
) -> None:
    TrainingMetric.objects.bulk_create(
        TrainingMetric(
            run=run,
            step=i + 1,
            values={"score": s, "kl": k, "response_length": n, "loss": 0.1, **extra},
        )
        for i, (s, k, n) in enumerate(zip(score, kl, length, strict=True))
    )


def test_it_warns_that_the_reward_model_is_being_gamed(client: Client, dave, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _rl_run(tmp_path)
    # The policy collapses onto long repeats: score up from about 0 to 6, length 10 -> 32.
    score = [0.0, 0.2, -0.2, 0.0] + [0.4 * i for i in range(1, 17)]
    _report(run, score, [1.0] * 20, [10.0, 11.0, 9.0, 10.0] * 3 + [12, 13, 14, 20, 24, 28, 31, 32])
    client.force_login(dave)

    page = client.get(run.get_absolute_url()).content.decode()
    partial = client.get(run.get_absolute_url(), headers=HX).content.decode()

    for body in (page, partial):
        assert "Possible reward hacking since step 16" in body
        assert "completion length went to 28.8 tokens" in body
        assert "7.5–12.5" in body  # the normal range it left
        assert "0.620" in body  # the reward model's held-out accuracy beside it
    assert "<html" not in partial


def test_it_stays_quiet_while_length_and_kl_stay_in_range(client: Client, dave, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _rl_run(tmp_path, kind="ppo")
    _report(run, [0.1 * i for i in range(20)], [1.0] * 20, [10.0, 11.0, 9.0, 10.0] * 5)
    client.force_login(dave)

    body = client.get(run.get_absolute_url()).content.decode()

    assert 'id="reward-watch"' in body and "Possible reward hacking" not in body
    assert "limit 12.0" in body  # twice kl_target
    assert "Scored above every reference answer" not in body  # not reported by this run


def test_it_shows_how_many_samples_score_beyond_the_reference(
    client: Client, dave, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    run = _rl_run(tmp_path)
    _report(run, [0.0] * 20, [1.0] * 20, [10.0] * 20, beyond_reference=0.25)
    client.force_login(dave)

    body = client.get(run.get_absolute_url()).content.decode()

    assert "Scored above every reference answer" in body and "25% of samples" in body


def test_it_waits_for_enough_rollouts_before_judging(client: Client, dave, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _rl_run(tmp_path)
    _report(run, [0.0, 5.0], [0.0, 50.0], [10.0, 40.0])
    client.force_login(dave)

    body = client.get(run.get_absolute_url()).content.decode()

    assert "waits for enough rollouts" in body and "Possible reward hacking" not in body


def test_it_shows_no_watch_on_other_kinds(client: Client, dave, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory(kind="dpo", status=TrainingRun.Status.RUNNING)
    client.force_login(dave)

    assert 'id="reward-watch"' not in client.get(run.get_absolute_url()).content.decode()


def test_it_keeps_annotators_out_of_an_rl_run(client: Client, alice, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _rl_run(tmp_path)
    client.force_login(alice)

    assert client.get(run.get_absolute_url(), headers=HX).status_code in (403, 404)


def test_it_shows_a_reward_runs_score_statistics(client: Client, carol, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stats = {"mean": -1.25, "std": 0.5, "count": 12, "reference": "chosen"}
    with_stats = reward_run(tmp_path, name="with", reward_stats=stats)
    without = reward_run(tmp_path, name="without")
    client.force_login(carol)

    body = client.get(with_stats.get_absolute_url()).content.decode()
    assert "Scores on 12 reference answers (chosen)" in body and "-1.2500" in body
    assert f"?kind=grpo&amp;reward_run={with_stats.pk}" in body
    other = client.get(without.get_absolute_url()).content.decode()
    assert "No score statistics yet" in other


def test_it_offers_the_grpo_settings_and_a_reward_model(client: Client, carol, model) -> None:  # type: ignore[no-untyped-def]
    labeled_snapshot(prompts=2, k=2)
    client.force_login(carol)

    body = client.get("/training/runs/new/?kind=grpo").content.decode()

    assert 'name="reward_run"' in body
    assert 'name="vf_coef"' not in body and 'name="gamma"' not in body
    assert "rloo" in field_block(body, "advantage")
    assert 'value="4"' in field_block(body, "rollout_k")
    assert "checked" in field_block(body, "normalize_rewards")
    assert "(R - mean) / sd" in field_block(body, "advantage")
