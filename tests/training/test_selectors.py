"""Training reads: who sees runs, curves as aligned JSON-safe series, reward choices, scores."""

from __future__ import annotations

import json

from tests.training.factories import TrainingRunFactory
from training import selectors
from training.models import TrainingMetric


def test_it_shows_runs_to_researchers_and_admins_only(alice, carol, dave) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory()
    assert list(selectors.training_run_list(user=dave)) == [run]
    assert list(selectors.training_run_list(user=carol)) == [run]
    assert not selectors.training_run_list(user=alice).exists()


def test_it_aligns_curves_on_steps_and_makes_them_json_safe(db) -> None:  # type: ignore[no-untyped-def]
    run = TrainingRunFactory()
    # The databases refuse NaN in JSON; the reporter stores None, and anything else that is
    # not a number reads as None too.
    TrainingMetric.objects.create(run=run, step=2, values={"loss": 0.5, "kl": None})
    TrainingMetric.objects.create(run=run, step=1, values={"loss": 1.0})
    # The last step's held-out metrics come as a second report of that step.
    TrainingMetric.objects.create(run=run, step=2, values={"eval/loss": "n/a"})
    TrainingMetric.objects.create(run=run, step=3, values={"loss": 0.25, "kl": 0.1})
    curves = selectors.training_run_curves(run=run)
    assert curves == {
        "steps": [1, 2, 3],
        "metrics": {
            "loss": [1.0, 0.5, 0.25],
            "kl": [None, None, 0.1],
            "eval/loss": [None, None, None],
        },
    }
    json.dumps(curves, allow_nan=False)
    assert selectors.training_run_curves(run=run, after_step=2)["steps"] == [3]


def test_it_compares_runs_keyed_by_id_in_one_query(db, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    first, second, empty = TrainingRunFactory(), TrainingRunFactory(), TrainingRunFactory()
    TrainingMetric.objects.create(run=first, step=1, values={"loss": 1.0})
    TrainingMetric.objects.create(run=second, step=5, values={"loss": 2.0})
    with django_assert_num_queries(1):
        compared = selectors.training_runs_compare(runs=[first, second, empty])
    assert compared[first.pk] == {"steps": [1], "metrics": {"loss": [1.0]}}
    assert compared[second.pk] == {"steps": [5], "metrics": {"loss": [2.0]}}
    assert compared[empty.pk] == {"steps": [], "metrics": {}}


def test_it_offers_only_finished_reward_runs_with_a_model(db) -> None:  # type: ignore[no-untyped-def]
    done = TrainingRunFactory(kind="reward", status="succeeded", final_dir="/runs/1/final")
    TrainingRunFactory(kind="reward", status="succeeded", final_dir="")
    TrainingRunFactory(kind="reward", status="failed", final_dir="/runs/3/final")
    TrainingRunFactory(kind="dpo", status="succeeded", final_dir="/runs/4/final")
    assert list(selectors.reward_runs_finished()) == [done]
