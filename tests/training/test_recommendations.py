"""A base model's recommended settings: what the service stores and refuses, and how a run
created without some settings takes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.factories import labeled_snapshot, tiny_policy
from training import runs
from training.models import RecommendedSettings
from training.recommendations import (
    RecommendationError,
    recommended_settings_for,
    recommended_settings_set,
    recommended_values,
)


@pytest.fixture
def model(db, tmp_path: Path):  # type: ignore[no-untyped-def]
    return tiny_policy(tmp_path, name="encoder")


def test_it_stores_the_given_fields_coerced_as_a_config(model, carol) -> None:  # type: ignore[no-untyped-def]
    saved = recommended_settings_set(
        model=model,
        kind="reward",
        values={"learning_rate": 5e-5, "num_epochs": 3.0, "grouped": False},
        note="measured",
        user=carol,
    )
    # JSON's whole float 3.0 is the int field's 3; only the given fields are stored.
    assert saved.values == {"learning_rate": 5e-5, "num_epochs": 3, "grouped": False}
    assert type(saved.values["num_epochs"]) is int
    assert (saved.note, saved.updated_by) == ("measured", carol)
    assert recommended_settings_for(model=model, kind="reward") == saved
    assert recommended_settings_for(model=model, kind="dpo") is None
    assert recommended_settings_for(model=None, kind="reward") is None


def test_it_replaces_what_a_model_recommended_for_a_kind(model) -> None:  # type: ignore[no-untyped-def]
    recommended_settings_set(model=model, kind="reward", values={"learning_rate": 5e-5})
    recommended_settings_set(model=model, kind="reward", values={"batch_size": 8})
    recommended_settings_set(model=model, kind="dpo", values={"beta": 0.2})
    assert RecommendedSettings.objects.count() == 2
    assert recommended_settings_for(model=model, kind="reward").values == {"batch_size": 8}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "values", "field", "message"),
    [
        ("nope", {"seed": 1}, "kind", "unknown kind"),
        ("reward", ["learning_rate"], "values", "an object"),
        ("reward", {}, "values", "at least one"),
        ("reward", {"beta": 0.1}, "beta", "unknown field"),  # DPO's, not a reward run's
        ("reward", {"learning_rate": "fast"}, "learning_rate", "learning_rate"),
        ("reward", {"batch_size": 0}, "batch_size", "batch_size"),
        ("reward", {"num_epochs": 10**6}, "num_epochs", "at most"),
        # Valid alone, refused with the kind's other defaults (grouped=True needs no change,
        # but the listwise loss needs grouped).
        ("reward", {"loss": "plackett_luce", "grouped": False}, "grouped", "needs grouped"),
    ],
)
def test_it_refuses_settings_no_run_could_use(model, kind, values, field, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecommendationError) as caught:
        recommended_settings_set(model=model, kind=kind, values=values)
    assert caught.value.field == field and message in str(caught.value)
    assert not RecommendedSettings.objects.exists()


def test_it_ignores_a_stored_field_the_config_no_longer_has(model) -> None:  # type: ignore[no-untyped-def]
    saved = recommended_settings_set(model=model, kind="reward", values={"batch_size": 8})
    RecommendedSettings.objects.filter(pk=saved.pk).update(values={"batch_size": 8, "gone": 1})
    saved.refresh_from_db()
    assert recommended_values(saved) == {"batch_size": 8}


def test_a_run_takes_the_models_recommendations_for_what_it_leaves_out(model) -> None:  # type: ignore[no-untyped-def]
    snapshot = labeled_snapshot(prompts=3, k=2, mode="pairwise")
    recommended_settings_set(
        model=model, kind="reward", values={"learning_rate": 5e-5, "batch_size": 8}
    )
    run = runs.training_run_create(
        kind="reward", base_model=model, snapshot=snapshot, config={"batch_size": 2}
    )
    # Given beats recommended beats the kind's default.
    assert run.config["batch_size"] == 2
    assert run.config["learning_rate"] == 5e-5
    assert run.config["num_epochs"] == 1
    # Another kind from the same model: nothing recommended, the kind's defaults.
    dpo = runs.training_run_create(kind="dpo", base_model=model, snapshot=snapshot)
    assert dpo.config["learning_rate"] == 1e-5 and dpo.config["batch_size"] == 4


def test_the_admin_page_refuses_what_the_service_refuses(admin_client, model) -> None:  # type: ignore[no-untyped-def]
    url = "/admin/training/recommendedsettings/add/"
    form = {"base_model": model.pk, "kind": "reward", "note": "measured"}
    bad = admin_client.post(url, form | {"values": '{"beta": 0.1}'})
    assert bad.status_code == 200 and "unknown field" in bad.content.decode()
    assert not RecommendedSettings.objects.exists()
    good = admin_client.post(url, form | {"values": '{"learning_rate": 5e-5, "num_epochs": 3.0}'})
    assert good.status_code == 302
    saved = RecommendedSettings.objects.get()
    assert saved.values == {"learning_rate": 5e-5, "num_epochs": 3}
    assert saved.note == "measured" and saved.updated_by is not None
    # An edit changes the values of that model and kind, checked the same way.
    change = f"/admin/training/recommendedsettings/{saved.pk}/change/"
    refused = admin_client.post(change, {"values": '{"batch_size": 0}', "note": ""})
    assert refused.status_code == 200 and "batch_size" in refused.content.decode()
    assert admin_client.post(change, {"values": '{"batch_size": 8}', "note": ""}).status_code == 302
    saved.refresh_from_db()
    assert saved.values == {"batch_size": 8} and RecommendedSettings.objects.count() == 1
