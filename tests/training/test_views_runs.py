"""The training pages: run list, launch form, run page, curves JSON, compare, reward scoring."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from generation.models import Completion, GenerationJob, PolicyModel
from tests.generation.factories import PolicyModelFactory
from tests.labeling.factories import finished_job
from tests.training.factories import TrainingRunFactory, labeled_snapshot, tiny_policy
from training import runs
from training.models import CompletionReward, RewardScoring, TrainingMetric, TrainingRun

HX = {"HX-Request": "true"}


@pytest.fixture
def model(db, tmp_path: Path):  # type: ignore[no-untyped-def]
    # The services only check that a local source exists; these views never load weights.
    return tiny_policy(tmp_path, name="tiny")


@pytest.fixture
def snapshot(db):  # type: ignore[no-untyped-def]
    return labeled_snapshot(prompts=3, k=3, name="three prompts")


def dpo_run(model, snapshot, **config: Any) -> TrainingRun:  # type: ignore[no-untyped-def]
    return runs.training_run_create(
        kind="dpo", base_model=model, snapshot=snapshot, config=config, name=config.pop("_name", "")
    )


def reward_run(tmp_path: Path, **fields: Any) -> TrainingRun:
    final = tmp_path / "reward-final"
    final.mkdir(exist_ok=True)
    defaults = {"kind": "reward", "status": "succeeded", "final_dir": str(final)}
    return TrainingRunFactory(**(defaults | fields))  # type: ignore[return-value]


def field_block(html: str, name: str) -> str:
    """The ``<div class="field ...">`` that holds the input named ``name``."""
    blocks = re.split(r'(?=<div class="field[ "])', html)
    found = [b for b in blocks if f'name="{name}"' in b]
    assert found, f"no field named {name}"
    return found[0]


def json_island(html: str, element_id: str) -> Any:
    """The data of a ``json_script`` element."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</script>', html, re.S)
    assert match, f"no #{element_id}"
    return json.loads(match[1])


def launch_data(model, snapshot, **overrides: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from training.core.configs import config_fields

    kind = overrides.get("kind", "dpo")
    data: dict[str, Any] = {"kind": kind, "base_model": model.pk, "snapshot": snapshot.pk}
    for field in config_fields(kind):
        if field.type is bool:
            if field.default:
                data[field.name] = "on"
        else:
            data[field.name] = field.default
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- permissions and methods ----------------------------------------------------------------------


def test_it_keeps_annotators_out(client: Client, alice, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    client.force_login(alice)
    for url in [
        "/training/runs/",
        "/training/runs/new/",
        run.get_absolute_url(),
        f"/training/runs/{run.pk}/metrics.json",
        f"/training/runs/compare/?runs={run.pk}&runs={run.pk}",
    ]:
        assert client.get(url).status_code == 403, url
    assert client.post(f"/training/runs/{run.pk}/cancel/").status_code == 403
    assert "/training/" not in client.get("/").content.decode()  # no nav link either


def test_it_sends_anonymous_users_to_the_login_page(client: Client, db) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/training/runs/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_keeps_researchers_read_only(client: Client, dave, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    client.force_login(dave)
    assert client.get("/training/runs/").status_code == 200
    page = client.get(run.get_absolute_url())
    assert page.status_code == 200
    assert "Cancel" not in page.content.decode()
    assert client.get("/training/runs/new/").status_code == 403
    assert client.post("/training/runs/new/", launch_data(model, snapshot)).status_code == 403
    assert client.post(f"/training/runs/{run.pk}/cancel/").status_code == 403
    assert client.post("/training/scorings/", {"reward_run": run.pk, "job": 1}).status_code == 403
    run.refresh_from_db()
    assert run.status == "queued" and TrainingRun.objects.count() == 1


def test_it_rejects_wrong_methods(client: Client, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    client.force_login(carol)
    assert client.post("/training/runs/").status_code == 405
    assert client.put("/training/runs/new/").status_code == 405
    assert client.post(run.get_absolute_url()).status_code == 405
    assert client.post(f"/training/runs/{run.pk}/metrics.json").status_code == 405
    assert client.get(f"/training/runs/{run.pk}/cancel/").status_code == 405
    assert client.get(f"/training/runs/{run.pk}/resume/").status_code == 405
    assert client.delete("/training/scorings/").status_code == 405


def test_it_answers_404_for_unknown_runs(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    assert client.get("/training/runs/999/").status_code == 404
    assert client.get("/training/runs/999/metrics.json").status_code == 404
    assert client.post("/training/runs/999/cancel/").status_code == 404
    assert client.get("/training/runs/compare/?runs=998&runs=999").status_code == 404
    assert client.get("/training/runs/compare/?runs=x").status_code == 404
    assert client.get("/training/scorings/?job=999").status_code == 404


# --- list -----------------------------------------------------------------------------------------


def test_it_keeps_long_generated_names_on_one_line_with_the_full_name_as_title(
    client: Client, dave, model, snapshot
) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    assert run.name == "DPO · tiny · three prompts"  # made from the kind, model and snapshot
    client.force_login(dave)
    body = client.get("/training/runs/").content.decode()
    assert f'<a class="clip" href="{run.get_absolute_url()}" title="{run.name}">' in body


def test_it_lists_and_filters_runs(client: Client, dave, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    dpo = dpo_run(model, snapshot)
    sft = runs.training_run_create(kind="sft", base_model=model, snapshot=snapshot)
    TrainingRun.objects.filter(pk=sft.pk).update(status="running", step=5, total_steps=10)
    client.force_login(dave)
    body = client.get("/training/runs/").content.decode()
    assert dpo.name in body and sft.name in body
    assert "status-running" in body and "5 / 10" in body and "width: 50%" in body
    assert "New run" not in body
    assert 'aria-current="true">Training</a>' in body
    only_sft = client.get("/training/runs/?kind=sft").content.decode()
    assert sft.name in only_sft and dpo.name not in only_sft
    queued = client.get(f"/training/runs/?status=queued&snapshot={snapshot.pk}").content.decode()
    assert dpo.name in queued and sft.name not in queued
    other = PolicyModelFactory(name="other")
    none = client.get(f"/training/runs/?base_model={other.pk}").content.decode()
    assert dpo.name not in none and "match these filters" in none
    client.force_login(carol)
    assert "New run" in client.get("/training/runs/").content.decode()


# --- launch form ----------------------------------------------------------------------------------


def test_it_generates_the_config_fields_with_defaults_and_help(
    client: Client, carol, model
) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    body = client.get("/training/runs/new/?kind=dpo").content.decode()
    beta = field_block(body, "beta")
    assert 'value="0.1"' in beta and "Strength of the implicit KL penalty" in beta
    # DPO averages over pairs, as the paper and open-instruct do.
    assert 'value="pairs" selected' in field_block(body, "grouped_reduction")
    assert "checked" in field_block(body, "grouped")  # a bool defaulting to True
    assert 'name="reward_run"' not in body  # PPO only
    assert f'<option value="{model.pk}"' in field_block(body, "base_model")
    ppo = client.get("/training/runs/new/?kind=ppo").content.decode()
    assert 'name="init_kl_coef"' in ppo and 'name="beta"' not in ppo
    assert 'name="reward_run"' in ppo and "train one first" in ppo


def test_it_only_offers_trainable_models(client: Client, carol, model) -> None:  # type: ignore[no-untyped-def]
    served = PolicyModelFactory(name="served", backend="openai", server_url="http://x/v1")
    client.force_login(carol)
    block = field_block(client.get("/training/runs/new/").content.decode(), "base_model")
    assert f'value="{model.pk}"' in block and f'value="{served.pk}"' not in block


def test_it_preselects_the_only_base_model_and_snapshot(
    client: Client, carol, model, snapshot
) -> None:  # type: ignore[no-untyped-def]
    # The snapshot's own sampling model is served, so ``model`` is the only trainable one.
    PolicyModel.objects.exclude(pk=model.pk).update(backend="openai", server_url="http://x/v1")
    client.force_login(carol)
    body = client.get("/training/runs/new/?kind=dpo").content.decode()
    assert f'<option value="{model.pk}" selected>' in field_block(body, "base_model")
    assert f'<option value="{snapshot.pk}" selected>' in field_block(body, "snapshot")
    # With a second model to choose from, the admin chooses.
    tiny_policy(Path(model.source).parent / "second", name="second")
    body = client.get("/training/runs/new/?kind=dpo").content.decode()
    assert '<option value="" selected>' in field_block(body, "base_model")


def test_it_swaps_kinds_without_sending_the_csrf_token_in_the_query(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    body = client.get("/training/runs/new/").content.decode()
    select = body[
        body.index('<select name="kind"') : body.index(
            "</select>", body.index('<select name="kind"')
        )
    ]
    assert 'hx-get="/training/runs/new/"' in select
    assert 'hx-params="not csrfmiddlewaretoken"' in select


def test_it_marks_lora_settings_as_shown_with_use_lora(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    body = client.get("/training/runs/new/?kind=dpo").content.decode()
    for name in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"):
        assert 'data-shown-with="use_lora"' in field_block(body, name)
    assert "data-shown-with" not in field_block(body, "learning_rate")


def test_it_swaps_the_kind_fields_for_htmx(client: Client, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    partial = client.get(
        "/training/runs/new/",
        {"kind": "sft", "learning_rate": "0.003", "base_model": model.pk},
        headers=HX,
    )
    body = partial.content.decode()
    assert partial.status_code == 200 and "<html" not in body
    assert 'id="kind-fields"' in body
    assert 'name="completion_only_loss"' in body and 'name="beta"' not in body
    assert 'value="0.003"' in field_block(body, "learning_rate")  # typed values survive
    # Without JavaScript the same GET renders the whole page for that kind.
    full = client.get("/training/runs/new/?kind=sft").content.decode()
    assert "<html" in full and 'name="completion_only_loss"' in full
    assert 'hx-get="/training/runs/new/"' in full and 'href="?kind=sft"' in full


def test_it_keeps_an_unticked_box_unticked_across_a_kind_swap(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    # On the DPO form the admin unticked "grouped" (sent no value) and ticked use_lora,
    # then switched to reward: both settings exist there too. precompute_ref_log_probs was
    # never on the page, so nothing is said about it.
    body = client.get(
        "/training/runs/new/",
        {"kind": "reward", "use_lora": "on", "_checkbox": ["grouped", "use_lora"]},
        headers=HX,
    ).content.decode()
    assert "checked" not in field_block(body, "grouped")
    assert "checked" in field_block(body, "use_lora")
    # A first render keeps the dataclass default (grouped=True).
    fresh = client.get("/training/runs/new/", {"kind": "reward"}, headers=HX).content.decode()
    assert "checked" in field_block(fresh, "grouped")


def test_it_prefills_the_form_from_the_query(
    client: Client, carol, model, snapshot, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    reward = reward_run(tmp_path, name="rm", snapshot=snapshot)
    client.force_login(carol)
    body = client.get(
        f"/training/runs/new/?kind=ppo&model={model.pk}&snapshot={snapshot.pk}&reward_run={reward.pk}"
    ).content.decode()
    assert f'<option value="{model.pk}" selected>' in field_block(body, "base_model")
    assert f'<option value="{snapshot.pk}" selected>' in field_block(body, "snapshot")
    assert f'<option value="{reward.pk}" selected>' in field_block(body, "reward_run")
    assert '<option value="ppo" selected>' in body


# --- a base model's recommended settings ------------------------------------------------------


@pytest.fixture
def encoder(db, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A second base model that recommends settings for reward runs."""
    from training.recommendations import recommended_settings_set

    (tmp_path / "encoder").mkdir()
    encoder = tiny_policy(tmp_path / "encoder", name="encoder <base>")
    recommended_settings_set(
        model=encoder,
        kind="reward",
        values={"learning_rate": 5e-5, "num_epochs": 3, "grouped": False},
        note="Measured on <b>HH</b>.",
    )
    return encoder


def test_it_fills_in_the_base_models_recommended_settings(
    client: Client, carol, model, encoder
) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    body = client.get(f"/training/runs/new/?kind=reward&model={encoder.pk}").content.decode()
    rate = field_block(body, "learning_rate")
    assert 'value="5e-05"' in rate
    # Where the value came from, and what it would have been.
    assert "Recommended for encoder &lt;base&gt; (the default is 1e-05)" in rate
    assert 'value="3"' in field_block(body, "num_epochs")
    assert "checked" not in field_block(body, "grouped")  # a box recommended off
    assert 'value="4"' in field_block(body, "batch_size")  # not recommended: the default
    assert "Recommended" not in field_block(body, "batch_size")
    note = body[body.index('id="recommended-note"') :]
    note = note[: note.index("</p>")]
    assert "encoder &lt;base&gt;" in note and "Measured on &lt;b&gt;HH&lt;/b&gt;." in note
    assert '<input type="hidden" name="_recommended" value="learning_rate">' in body
    # The same model recommends nothing for DPO; another model nothing at all.
    dpo = client.get(f"/training/runs/new/?kind=dpo&model={encoder.pk}").content.decode()
    assert 'value="1e-05"' in field_block(dpo, "learning_rate")
    assert "recommended-note" not in dpo and "Recommended for" not in dpo
    tiny = client.get(f"/training/runs/new/?kind=reward&model={model.pk}").content.decode()
    assert "recommended-note" not in tiny and 'value="1e-05"' in field_block(tiny, "learning_rate")


def test_it_keeps_a_value_the_link_gives_over_the_recommendation(
    client: Client, carol, encoder
) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    body = client.get(
        f"/training/runs/new/?kind=reward&model={encoder.pk}&learning_rate=0.001"
    ).content.decode()
    assert 'value="0.001"' in field_block(body, "learning_rate")
    assert "Recommended" not in field_block(body, "learning_rate")
    assert "Recommended for" in field_block(body, "num_epochs")


def test_it_swaps_in_the_recommendations_when_the_base_model_changes(
    client: Client, carol, model, encoder
) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    page = client.get("/training/runs/new/?kind=reward").content.decode()
    select = field_block(page, "base_model")
    assert 'hx-get="/training/runs/new/"' in select and 'hx-target="#kind-fields"' in select
    assert 'hx-params="not csrfmiddlewaretoken"' in select
    # The options say which kinds a model recommends settings for (the page asks for the
    # settings only when they change); the other models' options say nothing.
    assert f'<option value="{encoder.pk}" data-recommends="reward">' in select
    assert f'<option value="{model.pk}">' in select
    # htmx sends the whole form: the values shown so far, then the new model.
    shown = {"kind": "reward", "learning_rate": "1e-05", "num_epochs": "1", "seed": "7"}
    picked = client.get(
        "/training/runs/new/",
        shown | {"base_model": encoder.pk, "grouped": "on", "_checkbox": ["grouped"]},
        headers=HX | {"HX-Trigger-Name": "base_model"},
    ).content.decode()
    assert "<html" not in picked and 'id="recommended-note"' in picked
    assert 'value="5e-05"' in field_block(picked, "learning_rate")
    assert 'value="3"' in field_block(picked, "num_epochs")
    assert "checked" not in field_block(picked, "grouped")
    assert 'value="7"' in field_block(picked, "seed")  # typed, not recommended: kept
    # Back to a model that recommends nothing: the recommended fields return to the
    # kind's defaults, the typed seed stays.
    back = client.get(
        "/training/runs/new/",
        {
            "kind": "reward",
            "base_model": model.pk,
            "learning_rate": "5e-05",
            "num_epochs": "3",
            "seed": "7",
            "_checkbox": ["grouped"],
            "_recommended": ["learning_rate", "num_epochs", "grouped"],
        },
        headers=HX | {"HX-Trigger-Name": "base_model"},
    ).content.decode()
    assert "recommended-note" not in back
    assert 'value="1e-05"' in field_block(back, "learning_rate")
    assert 'value="1"' in field_block(back, "num_epochs")
    assert "checked" in field_block(back, "grouped")
    assert 'value="7"' in field_block(back, "seed")


def test_it_swaps_in_the_recommendations_when_the_kind_changes(
    client: Client, carol, encoder
) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    # The DPO form showed the common defaults; the admin switches to reward.
    body = client.get(
        "/training/runs/new/",
        {"kind": "reward", "base_model": encoder.pk, "learning_rate": "1e-05", "beta": "0.1"},
        headers=HX | {"HX-Trigger-Name": "kind"},
    ).content.decode()
    assert 'value="5e-05"' in field_block(body, "learning_rate")
    assert 'id="recommended-note"' in body


def test_it_launches_with_the_recommended_settings_as_shown(
    client: Client, carol, encoder, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    pairs = labeled_snapshot(prompts=3, k=2, mode="pairwise", name="pairs")
    client.force_login(carol)
    data = launch_data(encoder, pairs, kind="reward", learning_rate=5e-5, num_epochs=3)
    del data["grouped"]
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/training/runs/new/", data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = TrainingRun.objects.get()
    assert (run.config["learning_rate"], run.config["num_epochs"], run.config["grouped"]) == (
        5e-5,
        3,
        False,
    )


def test_it_refuses_a_base_model_that_is_not_a_trainable_models_id(
    client: Client, carol, model
) -> None:  # type: ignore[no-untyped-def]
    served = PolicyModelFactory(name="served", backend="openai", server_url="http://x/v1")
    client.force_login(carol)
    for value in ("abc", "999999", str(served.pk), "-1"):
        response = client.get(f"/training/runs/new/?kind=reward&model={value}")
        assert response.status_code == 400, value
        assert "base model" in response.content.decode()
        htmx = client.get(
            "/training/runs/new/",
            {"kind": "reward", "base_model": value},
            headers=HX | {"HX-Trigger-Name": "base_model"},
        )
        assert htmx.status_code == 400, value
    # An empty choice ("---------") is no model, not a bad one.
    assert client.get("/training/runs/new/?kind=reward&base_model=").status_code == 200


def test_it_launches_a_run_from_the_form(  # type: ignore[no-untyped-def]
    client: Client, carol, model, snapshot, django_capture_on_commit_callbacks
) -> None:
    client.force_login(carol)
    data = launch_data(
        model, snapshot, max_steps=3, logging_steps=1, max_length=64, name="my run", notes="hi"
    )
    del data["grouped"]  # an unticked checkbox
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/training/runs/new/", data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert (run.kind, run.name, run.notes, run.status, run.created_by) == (
        "dpo",
        "my run",
        "hi",
        "queued",
        carol,
    )
    assert run.config["max_steps"] == 3 and run.config["max_length"] == 64
    assert run.config["beta"] == 0.1 and run.config["grouped"] is False
    assert len(callbacks) == 1  # the worker is told after the commit


def test_it_shows_config_errors_on_their_field(client: Client, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/training/runs/new/", launch_data(model, snapshot, beta=0, label_smoothing=0.7)
    )
    assert response.status_code == 200 and not TrainingRun.objects.exists()
    body = response.content.decode()
    assert "has-error" in field_block(body, "beta") and "must be &gt; 0" in field_block(
        body, "beta"
    )
    assert "[0, 0.5)" in field_block(body, "label_smoothing")
    assert "has-error" not in field_block(body, "learning_rate")
    assert 'value="0.7"' in field_block(body, "label_smoothing")  # the input is kept


def test_it_puts_service_errors_on_their_field(client: Client, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    dpo_run(model, snapshot, _name="taken")
    ties = labeled_snapshot(prompts=2, k=2, order="tie", ties="keep", name="all ties")
    client.force_login(carol)
    body = client.post(
        "/training/runs/new/", launch_data(model, snapshot, name="taken")
    ).content.decode()
    assert "already exists" in field_block(body, "name")
    body = client.post("/training/runs/new/", launch_data(model, ties)).content.decode()
    assert "no preference pairs" in field_block(body, "snapshot")
    body = client.post(
        "/training/runs/new/", launch_data(model, snapshot, kind="ppo")
    ).content.decode()
    assert "has-error" in field_block(body, "reward_run")
    assert TrainingRun.objects.count() == 1


# --- run page -------------------------------------------------------------------------------------


def test_it_counts_the_eta_down_between_two_reports(model, snapshot) -> None:  # type: ignore[no-untyped-def]
    from training.views import _eta

    run = dpo_run(model, snapshot)
    now = timezone.now()
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", step=5, total_steps=10, started_at=now - timedelta(seconds=50)
    )
    point = TrainingMetric.objects.create(run=run, step=5, values={"loss": 0.6})
    # Step 5 was reported 10 s in the past, 40 s after the start: 8 s a step, 5 steps to go.
    TrainingMetric.objects.filter(pk=point.pk).update(created_at=now - timedelta(seconds=10))
    run.refresh_from_db()
    at_now = _eta(run, now=now)
    later = _eta(run, now=now + timedelta(seconds=20))
    assert at_now == timedelta(seconds=30)  # 40 s of work left at the report, 10 s gone since
    assert later == timedelta(seconds=10)  # no new report: it counts down, it does not climb
    assert _eta(run, now=now + timedelta(seconds=600)) == timedelta(0)


def test_it_times_the_eta_from_the_first_report_not_from_the_start_up(model, snapshot) -> None:  # type: ignore[no-untyped-def]
    """A resumed (or multi-process) attempt: 60 s of start-up before its first report (step
    21), then 4 s a step up to step 25; 5 steps to go."""
    from training.views import _eta

    run = dpo_run(model, snapshot)
    now = timezone.now()
    started = now - timedelta(seconds=76)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", step=25, total_steps=30, started_at=started
    )
    for step, at in ((20, -30), (21, 60), (25, 76)):  # step 20: the earlier attempt's
        point = TrainingMetric.objects.create(run=run, step=step, values={"loss": 0.6})
        created = started + timedelta(seconds=at)
        TrainingMetric.objects.filter(pk=point.pk).update(created_at=created)
    run.refresh_from_db()
    assert _eta(run, now=now) == timedelta(seconds=20)


def test_it_shows_a_running_run_that_polls(client: Client, dave, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot, beta=0.25)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running",
        step=5,
        total_steps=10,
        started_at=timezone.now() - timedelta(seconds=50),
        log_tail="loaded the model\nstep 5",
    )
    TrainingMetric.objects.create(run=run, step=5, values={"loss": 0.6})
    client.force_login(dave)
    body = client.get(run.get_absolute_url()).content.decode()
    assert "<html" in body and 'hx-trigger="every 2s"' in body
    assert "5</strong> / 10" in body and "width: 50%" in body
    assert re.search(r"about (4\d|5\d) s left", body)  # 5 steps in 50 s, 5 to go
    assert "loaded the model\nstep 5" in body
    assert "<code>beta</code></th><td>0.25</td>" in body  # the config table
    curves = json_island(body, "run-curves")
    assert curves == {
        "run": run.pk,
        "status": "running",
        "active": True,
        "steps": [5],
        "metrics": {"loss": [0.6]},
    }
    assert snapshot.name in body and f"/labeling/snapshots/{snapshot.pk}/" in body
    partial = client.get(run.get_absolute_url(), headers=HX).content.decode()
    assert "<html" not in partial and 'id="run-status"' in partial
    assert 'hx-trigger="every 2s"' in partial


def test_it_shows_a_finished_run_with_its_model(client: Client, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    output = PolicyModelFactory(name="tiny-dpo", parent=model)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded",
        step=3,
        total_steps=3,
        output_model=output,
        eval_metrics={"eval/loss": 0.5, "eval/rewards/accuracies": 1.0},
        finished_at=timezone.now(),
    )
    client.force_login(carol)
    body = client.get(run.get_absolute_url()).content.decode()
    assert "every 2s" not in body and "status-succeeded" in body
    assert "eval/loss" in body and "0.5000" in body
    assert f'href="/generation/jobs/?model={output.pk}#new-job">Sample from this model' in body
    assert "Cancel" not in body and "Resume" not in body
    # The model page tells where the model came from.
    model_page = client.get(output.get_absolute_url()).content.decode()
    lineage = model_page.split('id="model-lineage">', 1)[1].split("</dd>", 1)[0]
    assert run.name in lineage and "(DPO)" in lineage
    assert snapshot.name in lineage and model.name in lineage
    assert f"/generation/jobs/?model={output.pk}" in model_page
    assert 'id="model-lineage"' not in client.get(model.get_absolute_url()).content.decode()


@pytest.mark.parametrize(
    ("eval_pairs", "accuracy", "shown", "chance"),
    [
        # 7 of 20: Wilson's 95% interval is 18-57%, which holds 50%.
        (20, 0.35, "<strong>35%</strong> of the 20 held-out pairs (95% interval 18–57%)", True),
        # 180 of 300: 54-65%, clear of chance.
        (300, 0.6, "<strong>60%</strong> of the 300 held-out pairs (95% interval 54–65%)", False),
    ],
)
def test_it_shows_a_reward_runs_held_out_accuracy_with_its_interval(
    client: Client, carol, model, tmp_path, eval_pairs, accuracy, shown, chance
) -> None:  # type: ignore[no-untyped-def]
    pairs = labeled_snapshot(prompts=2, k=2, mode="pairwise", name="pairs")
    type(pairs).objects.filter(pk=pairs.pk).update(eval_count=eval_pairs)
    run = reward_run(
        tmp_path,
        snapshot=pairs,
        base_model=model,
        eval_metrics={"eval/loss": 0.69, "eval/rewards/accuracies": accuracy},
    )
    client.force_login(carol)
    body = client.get(run.get_absolute_url()).content.decode()
    line = body.split('id="heldout-accuracy">', 1)[1].split("</p>", 1)[0]
    assert shown in line
    assert ("too few pairs to tell this model from chance" in line) is chance
    # A DPO run's page says nothing of the kind.
    dpo = reward_run(tmp_path, kind="dpo", snapshot=pairs, eval_metrics=run.eval_metrics)
    assert "heldout-accuracy" not in client.get(dpo.get_absolute_url()).content.decode()


def test_it_shows_why_a_run_failed_and_offers_resume(
    client: Client, carol, model, snapshot
) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    TrainingRun.objects.filter(pk=run.pk).update(status="failed", error="out of memory")
    client.force_login(carol)
    body = client.get(run.get_absolute_url()).content.decode()
    assert "out of memory" in body and "Resume" in body and "Cancel" not in body


def test_it_escapes_run_names_logs_and_metric_names(client: Client, dave, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot, _name="<script>alert('name')</script>")
    TrainingRun.objects.filter(pk=run.pk).update(
        status="failed",
        log_tail="<script>alert('log')</script>",
        error="<img src=x onerror=alert(1)>",
        notes="<b>bold</b>",
    )
    TrainingMetric.objects.create(run=run, step=1, values={"</script><script>alert(2)": 1.0})
    client.force_login(dave)
    for url in [run.get_absolute_url(), "/training/runs/"]:
        body = client.get(url).content.decode()
        assert "<script>alert" not in body and "<img src=x" not in body and "<b>bold" not in body
        assert "&lt;script&gt;alert(&#x27;name&#x27;)" in body
    body = client.get(run.get_absolute_url()).content.decode()
    assert "&lt;script&gt;alert(&#x27;log&#x27;)" in body and "&lt;img src=x" in body
    assert "\\u003C/script\\u003E" in body  # the JSON island cannot close its script tag


# --- metrics JSON ---------------------------------------------------------------------------------


def test_it_serves_the_curves_as_json(client: Client, dave, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    for step, loss in [(1, 0.7), (2, 0.6), (3, None)]:
        values = {"rewards/margins": step / 10} | ({"loss": loss} if loss else {})
        TrainingMetric.objects.create(run=run, step=step, values=values)
    client.force_login(dave)
    data = client.get(f"/training/runs/{run.pk}/metrics.json").json()
    assert data == {
        "run": run.pk,
        "status": "queued",
        "active": True,
        "steps": [1, 2, 3],
        "metrics": {"loss": [0.7, 0.6, None], "rewards/margins": [0.1, 0.2, 0.3]},
    }
    later = client.get(f"/training/runs/{run.pk}/metrics.json?after=2").json()
    assert later["steps"] == [3] and later["metrics"]["rewards/margins"] == [0.3]
    assert client.get(f"/training/runs/{run.pk}/metrics.json?after=x").json()["steps"] == [1, 2, 3]
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    assert client.get(f"/training/runs/{run.pk}/metrics.json?after=3").json() == {
        "run": run.pk,
        "status": "succeeded",
        "active": False,
        "steps": [],
        "metrics": {},
    }


# --- cancel and resume ----------------------------------------------------------------------------


def test_it_cancels_and_resumes_a_run(client: Client, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    client.force_login(carol)
    response = client.post(f"/training/runs/{run.pk}/cancel/")
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    run.refresh_from_db()
    assert run.status == "cancelled"
    partial = client.post(f"/training/runs/{run.pk}/resume/", headers=HX).content.decode()
    assert "<html" not in partial and "status-queued" in partial and "every 2s" in partial
    run.refresh_from_db()
    assert run.status == "queued"
    # A finished run cannot be resumed: the reason is shown, nothing changes.
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    page = client.post(f"/training/runs/{run.pk}/resume/", follow=True).content.decode()
    assert "cannot be resumed" in page
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_it_asks_a_running_run_to_stop(client: Client, carol, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    run = dpo_run(model, snapshot)
    TrainingRun.objects.filter(pk=run.pk).update(status="running")
    client.force_login(carol)
    partial = client.post(f"/training/runs/{run.pk}/cancel/", headers=HX).content.decode()
    assert "cancelling at the next step" in partial
    run.refresh_from_db()
    assert run.cancel_requested and run.status == "running"


# --- compare --------------------------------------------------------------------------------------


def test_it_compares_runs_on_their_shared_metrics(client: Client, dave, model, snapshot) -> None:  # type: ignore[no-untyped-def]
    a = dpo_run(model, snapshot, _name="run A")
    b = dpo_run(model, snapshot, _name="run <B>")
    TrainingMetric.objects.create(run=a, step=1, values={"loss": 0.7, "kl": 0.1})
    TrainingMetric.objects.create(run=a, step=2, values={"loss": 0.6})
    TrainingMetric.objects.create(run=b, step=2, values={"loss": 0.5})
    TrainingMetric.objects.create(run=b, step=4, values={"loss": 0.4})
    client.force_login(dave)
    response = client.get(f"/training/runs/compare/?runs={a.pk}&runs={b.pk}")
    body = response.content.decode()
    assert response.status_code == 200 and "run A" in body and "run &lt;B&gt;" in body
    data = json_island(body, "compare-data")
    assert data == {
        "charts": [
            {
                "metric": "loss",
                "steps": [1, 2, 4],
                "series": [
                    {"label": "run A", "values": [0.7, 0.6, None]},
                    {"label": "run <B>", "values": [None, 0.5, 0.4]},
                ],
            }
        ]
    }
    one = client.get(f"/training/runs/compare/?runs={a.pk}", follow=True)
    assert "Tick two or more runs" in one.content.decode()
    assert one.redirect_chain[-1][0] == "/training/runs/"


# --- reward scoring and rewards on the job page ---------------------------------------------------


def test_it_scores_a_job_with_a_reward_run(  # type: ignore[no-untyped-def]
    client: Client, carol, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    reward = reward_run(tmp_path, name="rm-1")
    job = finished_job(prompts=2, k=2)
    client.force_login(carol)
    fragment = client.get(f"/training/scorings/?job={job.pk}", headers=HX).content.decode()
    assert "<html" not in fragment and "Not scored" in fragment
    assert f'<option value="{reward.pk}">rm-1</option>' in fragment
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/training/scorings/", {"reward_run": reward.pk, "job": job.pk})
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    scoring = RewardScoring.objects.get()
    assert (scoring.reward_run, scoring.job, scoring.total, scoring.created_by) == (
        reward,
        job,
        4,
        carol,
    )
    assert len(callbacks) == 1
    # The fragment lists the scoring and keeps polling while it is queued.
    fragment = client.get(f"/training/scorings/?job={job.pk}", headers=HX).content.decode()
    assert "status-queued" in fragment and 'hx-trigger="every 2s"' in fragment
    full = client.get(f"/training/scorings/?job={job.pk}").content.decode()
    assert "<html" in full and job.get_absolute_url() in full
    # A second scoring while the first is queued is refused with the reason.
    page = client.post(
        "/training/scorings/", {"reward_run": reward.pk, "job": job.pk}, follow=True
    ).content.decode()
    assert "already scoring" in page and RewardScoring.objects.count() == 1
    running = finished_job(prompts=1, k=2)
    GenerationJob.objects.filter(pk=running.pk).update(status="running")
    page = client.post(
        "/training/scorings/", {"reward_run": reward.pk, "job": running.pk}, follow=True
    ).content.decode()
    assert "has not finished" in page and RewardScoring.objects.count() == 1
    bad = client.post("/training/scorings/", {"reward_run": reward.pk, "job": "x"})
    assert bad.status_code == 400 and "valid choice" in bad.content.decode()


def test_it_cancels_and_resumes_a_scoring_from_the_job_page(
    client: Client, carol, dave, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    job = finished_job(prompts=1, k=2)
    scoring = RewardScoring.objects.create(
        reward_run=reward_run(tmp_path, name="rm-3"), job=job, status="running", total=2
    )
    cancel, resume = (
        f"/training/scorings/{scoring.pk}/{action}/" for action in ("cancel", "resume")
    )
    client.force_login(dave)
    assert client.post(cancel).status_code == 403
    client.force_login(carol)
    fragment = client.get(f"/training/scorings/?job={job.pk}", headers=HX).content.decode()
    assert f'hx-post="{cancel}"' in fragment and 'hx-target="#job-scorings"' in fragment
    assert client.get(cancel).status_code == 405
    flagged = client.post(cancel, headers=HX).content.decode()
    assert '<section id="job-scorings"' in flagged and "<html" not in flagged
    scoring.refresh_from_db()
    assert scoring.cancel_requested and scoring.status == "running"
    # A running scoring cannot be resumed: the reason is shown on the job's page.
    page = client.post(resume, follow=True)
    assert page.redirect_chain[-1][0] == job.get_absolute_url()
    assert "a running scoring cannot be resumed" in page.content.decode()
    RewardScoring.objects.filter(pk=scoring.pk).update(status="failed", error="worker died")
    fragment = client.get(f"/training/scorings/?job={job.pk}", headers=HX).content.decode()
    assert f'hx-post="{resume}"' in fragment and "worker died" in fragment
    response = client.post(resume)
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    scoring.refresh_from_db()
    assert (scoring.status, scoring.error) == ("queued", "")
    assert client.post("/training/scorings/999999/cancel/").status_code == 404


def test_it_offers_scoring_on_a_finished_reward_run(client: Client, carol, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reward = reward_run(tmp_path, name="rm-2")
    job = finished_job(prompts=1, k=2)
    client.force_login(carol)
    body = client.get(reward.get_absolute_url()).content.decode()
    assert 'id="score-job-form"' in body and f'<option value="{job.pk}">' in body
    assert f"/training/runs/new/?kind=ppo&amp;reward_run={reward.pk}" in body


def test_it_shows_rewards_on_the_job_page_to_admins_only(  # type: ignore[no-untyped-def]
    client: Client, carol, dave, tmp_path: Path
) -> None:
    reward = reward_run(tmp_path, name="rm-<3>")
    job = finished_job(prompts=1, k=2, texts=["<script>alert('c')</script>", "fine"])
    for completion, value in zip(Completion.objects.filter(job=job), [1.25, -0.5], strict=True):
        CompletionReward.objects.create(completion=completion, reward_run=reward, reward=value)
    RewardScoring.objects.create(reward_run=reward, job=job, status="succeeded", total=2, scored=2)
    client.force_login(carol)
    body = client.get(job.get_absolute_url()).content.decode()
    assert "rm-&lt;3&gt;: 1.250" in body and "rm-&lt;3&gt;: -0.500" in body
    assert f'hx-get="/training/scorings/?job={job.pk}"' in body
    assert f'href="/training/scorings/?job={job.pk}"' in body
    assert "<script>alert('c')" not in body and "&lt;script&gt;alert(&#x27;c&#x27;)" in body
    client.force_login(dave)
    body = client.get(job.get_absolute_url()).content.decode()
    assert "1.250" not in body and "rm-&lt;3&gt;" not in body and "/training/scorings/" not in body
    assert client.get(f"/training/scorings/?job={job.pk}").status_code == 403


def test_it_links_training_from_the_nav_and_home(client: Client, carol, dave) -> None:  # type: ignore[no-untyped-def]
    client.force_login(dave)
    assert 'href="/training/runs/"' in client.get("/").content.decode()
    client.force_login(carol)
    home = client.get("/").content.decode()
    assert "Train a model" in home


def test_it_keeps_a_generation_job_free_of_scoring_until_it_finished(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    job = finished_job(prompts=1, k=2)
    GenerationJob.objects.filter(pk=job.pk).update(status="running")
    client.force_login(carol)
    assert "/training/scorings/" not in client.get(job.get_absolute_url()).content.decode()


def test_it_offers_the_listwise_losses_and_launches_kto_from_the_form(  # type: ignore[no-untyped-def]
    client: Client, carol, model, snapshot, django_capture_on_commit_callbacks
) -> None:
    client.force_login(carol)
    reward = client.get("/training/runs/new/?kind=reward").content.decode()
    loss = field_block(reward, "loss")
    assert 'value="pairwise" selected' in loss
    assert 'value="plackett_luce"' in loss and 'value="score_regression"' in loss
    kto = client.get("/training/runs/new/?kind=kto").content.decode()
    assert 'name="desirable_weight"' in kto and 'name="loss"' not in kto

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/training/runs/new/", launch_data(model, snapshot, kind="kto", max_steps=2)
        )

    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.kind == "kto"
    assert run.config["beta"] == 0.1 and run.config["batch_size"] == 4
