"""The demo's seeding: every role's login, the demo prompts, the models, the HH-RLHF pairs
as a queue and a snapshot, and a ranking queue sampled from the tiny model."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from config.roles import user_is_admin, user_is_annotator, user_is_researcher
from demo.management.commands.seed_demo import ENCODER_REWARD_SETTINGS
from generation.models import Completion, GenerationJob, PolicyModel, PromptSet
from labeling.models import DatasetSnapshot, LabelingQueue
from tests.queries import first_row
from training.core.hf import reward_architecture
from training.forms import TrainingRunForm
from training.recommendations import recommended_settings_for, recommended_settings_set


@pytest.mark.slow
def test_it_seeds_the_demo_idempotently(db, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.PREFLAB_DATA_DIR = tmp_path
    out = StringIO()
    call_command("seed_demo", "--no-job", stdout=out)
    call_command("seed_demo", "--no-job", stdout=StringIO())
    assert "carol" in out.getvalue() and "carol-demo" in out.getvalue()
    for username, check in [
        ("alice", user_is_annotator),
        ("bob", user_is_annotator),
        ("carol", user_is_admin),
        ("dave", user_is_researcher),
    ]:
        # A request, as the login throttle (django-axes) needs one to authenticate.
        user = authenticate(
            RequestFactory().post("/login/"), username=username, password=f"{username}-demo"
        )
        assert user is not None and check(user)
    demo = PromptSet.objects.get(name="Demo prompts")
    assert demo.prompts.count() >= 50
    assert demo.prompts.filter(text="Once upon a").exists()
    hh = GenerationJob.objects.get(name="HH-RLHF harmless (imported, first 200)")
    assert (
        hh.prompts_total > 150 and Completion.objects.filter(job=hh).count() == 2 * hh.prompts_total
    )
    tiny = PolicyModel.objects.get(name="tiny-random (demo)")
    assert tiny.source == str(tmp_path / "models" / "tiny-random")
    # A real (pretrained) reward-model base that loads offline from its PyPI package.
    encoder = PolicyModel.objects.get(name="all-MiniLM-L6-v2 (reward-model base)")
    # Copied under the data dir: local models must lie under the model roots.
    assert encoder.source == str(tmp_path / "models" / "all-MiniLM-L6-v2")
    assert (Path(encoder.source) / "model.safetensors").is_file()
    assert reward_architecture(encoder.source) == "encoder"
    assert PolicyModel.objects.count() == 2
    hh_queue = LabelingQueue.objects.get(name="HH-RLHF harmless: pick the better answer")
    assert hh_queue.mode == "pairwise" and hh_queue.tasks.count() == hh.prompts_total
    # Training works on first start: the pairs are already comparisons in a snapshot.
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.name == "HH-RLHF harmless (demo snapshot)"
    # 40% of its 800 pairs are held out, so a run's held-out accuracy means something.
    assert snapshot.row_count == 800 and 270 <= snapshot.eval_count <= 370
    assert LabelingQueue.objects.count() == 2
    # MiniLM recommends its measured reward-run settings, and carol's launch form shows them
    # as soon as she picks it (with the HH snapshot): her first run needs no typing.
    recommended = recommended_settings_for(model=encoder, kind="reward")
    assert recommended is not None and recommended.values == ENCODER_REWARD_SETTINGS
    assert recommended.values["learning_rate"] > 1e-5  # the form's own default stays at chance
    form = TrainingRunForm(
        initial={"base_model": str(encoder.pk), "snapshot": str(snapshot.pk)}, kind="reward"
    )
    for name, value in ENCODER_REWARD_SETTINGS.items():
        assert form[name].value() == value, name
    assert recommended_settings_for(model=tiny, kind="reward") is None
    # An admin's later change survives another seed.
    recommended_settings_set(model=encoder, kind="reward", values={"learning_rate": 2e-5})
    call_command("seed_demo", "--no-job", stdout=StringIO())
    assert recommended_settings_for(model=encoder, kind="reward").values == {  # type: ignore[union-attr]
        "learning_rate": 2e-5
    }


@pytest.mark.slow
def test_it_seeds_a_ranking_queue_from_the_tiny_model(db, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.PREFLAB_DATA_DIR = tmp_path
    call_command("seed_demo", stdout=StringIO())
    job = GenerationJob.objects.get(source="model")
    assert job.status == "succeeded" and job.prompts_done == job.prompts_total >= 50
    ranking = LabelingQueue.objects.get(mode="ranking")
    assert ranking.tasks.count() == job.prompts_total
    assert first_row(ranking.tasks.all()).slots.count() == 4
