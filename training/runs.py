"""Training runs: checks, create, cancel, resume, the watchdog, and running one.

A run mirrors a generation job's lifecycle: created queued, claimed by one worker with a
conditional UPDATE, a heartbeat thread while it trains, a cancel flag the runner checks
between steps, a watchdog that fails runs whose worker died, and resume from the latest
checkpoint. The ML itself is ``training.core.runners.run_training``; this module only
feeds it a snapshot's data and a reporter, and registers what it produced.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from config.jobs.lifecycle import Lifecycle
from config.naming import free_name
from generation.models import PolicyModel
from labeling.models import DatasetSnapshot, SnapshotRow
from labeling.snapshots import snapshot_singles
from training import datasets, distributed
from training.core.configs import ConfigError, from_dict
from training.core.runners import RunResult, RunSpec, TrainingError, latest_checkpoint
from training.core.scoring import RewardStats
from training.models import TrainingMetric, TrainingRun
from training.recommendations import recommended_settings_for, recommended_values
from training.reporting import RunReporter

logger = logging.getLogger(__name__)

KIND_SHORT_NAMES: dict[str, str] = {
    TrainingRun.Kind.REWARD: "Reward",
    TrainingRun.Kind.DPO: "DPO",
    TrainingRun.Kind.PPO: "PPO",
    TrainingRun.Kind.SFT: "SFT",
    TrainingRun.Kind.KTO: "KTO",
    TrainingRun.Kind.GRPO: "GRPO",
}
_NAME_LENGTH = 200
_CHECKPOINT_STEP = re.compile(r"checkpoint-(\d+)$")


class RunError(ValueError):
    """A request that cannot be carried out; the message is shown to the user as is.

    ``field`` names the form or config field at fault, when one is (``learning_rate``,
    ``base_model``, ``reward_run``...), else it is empty.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


# --- checks ---------------------------------------------------------------------------------


def _check_trainable(model: PolicyModel) -> None:
    """The base model must be weights this machine can load, not a remote endpoint."""
    if model.backend == PolicyModel.Backend.OPENAI:
        raise RunError(
            f"{model.name!r} is served by an OpenAI-compatible server; training needs the "
            "weights: pick a transformers or vLLM model with a local folder or hub id",
            field="base_model",
        )
    if model.backend not in (PolicyModel.Backend.TRANSFORMERS, PolicyModel.Backend.VLLM):
        raise RunError(f"{model.name!r} has an unknown backend", field="base_model")
    if not model.source:
        raise RunError(f"{model.name!r} has no source to load weights from", field="base_model")
    if Path(model.source).is_absolute() and not Path(model.source).exists():
        raise RunError(
            f"the weights of {model.name!r} are gone: {model.source} does not exist",
            field="base_model",
        )


def _check_reward_base(kind: str, model: PolicyModel) -> None:
    """A reward run's base must be an architecture a reward model can be built on; a local
    folder's config says so at once (a hub id, or a folder without one, is checked when the
    run starts)."""
    if kind != TrainingRun.Kind.REWARD or not (Path(model.source) / "config.json").is_file():
        return
    from training.core.hf import reward_architecture

    try:
        reward_architecture(model.source)
    except TrainingError as exc:
        raise RunError(str(exc), field="base_model") from exc


def _check_policy_base(kind: str, model: PolicyModel) -> None:
    """Every kind but a reward run trains a causal LM: an encoder that is only a base for
    reward models (BERT, DeBERTa...; its local folder's config says so) is refused at once,
    not after the worker has loaded it."""
    config = Path(model.source) / "config.json"
    if kind == TrainingRun.Kind.REWARD or not config.is_file():
        return
    from training.core.hf import ENCODER_POOLING

    try:
        model_type = str(json.loads(config.read_text()).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return  # the worker reports an unreadable config with its own message
    if model_type in ENCODER_POOLING:
        raise RunError(
            f"{model.name!r} is an encoder ({model_type}), a base for reward models only: "
            f"a {TrainingRun.Kind(kind).label} run trains a causal language model",
            field="base_model",
        )


def reward_run_check_finished(reward_run: TrainingRun) -> None:
    """Raise unless ``reward_run`` is a reward-model run that finished with a saved model
    (what PPO, job scoring and labeling assistance all need)."""
    if reward_run.kind != TrainingRun.Kind.REWARD:
        raise RunError(f"{reward_run.name!r} is not a reward-model run", field="reward_run")
    if reward_run.status != TrainingRun.Status.SUCCEEDED or not reward_run.final_dir:
        raise RunError(
            f"reward run {reward_run.name!r} has not finished successfully", field="reward_run"
        )


def _check_reward_run(kind: str, reward_run: TrainingRun | None) -> None:
    if kind not in TrainingRun.RL_KINDS:
        if reward_run is not None:
            raise RunError("only a PPO or GRPO run takes a reward model", field="reward_run")
        return
    if reward_run is None:
        raise RunError(
            f"a {KIND_SHORT_NAMES[kind]} run needs a finished reward-model run", field="reward_run"
        )
    reward_run_check_finished(reward_run)
    if not Path(reward_run.final_dir).is_dir():
        raise RunError(
            f"the reward model of {reward_run.name!r} is gone: {reward_run.final_dir}",
            field="reward_run",
        )


def _check_data(kind: str, snapshot: DatasetSnapshot, config: Mapping[str, Any]) -> None:
    train = SnapshotRow.objects.filter(snapshot=snapshot, split=SnapshotRow.Split.TRAIN)
    loss = config.get("loss", "pairwise")
    if kind in (TrainingRun.Kind.REWARD, TrainingRun.Kind.DPO) and loss != "pairwise":
        rankings = datasets.snapshot_ranking_records(snapshot=snapshot)[SnapshotRow.Split.TRAIN]
        if loss == "score_regression" and not any(r.scores for r in rankings):
            raise RunError(
                f"snapshot {snapshot.name!r} has no scored answer in its train split "
                "(score regression trains on the rankings' 1-7 scores)",
                field="snapshot",
            )
        if loss == "plackett_luce" and not any(len(r.order) >= 2 for r in rankings):
            raise RunError(
                f"snapshot {snapshot.name!r} has no ranking that orders two completions in its "
                "train split (the Plackett-Luce loss trains on whole rankings)",
                field="snapshot",
            )
    elif kind == TrainingRun.Kind.KTO:
        # Pairs give one good and one bad answer each; single answers must hold both kinds.
        singles = snapshot_singles(snapshot=snapshot, split=SnapshotRow.Split.TRAIN)
        if not train.filter(is_tie=False).exists() and not (
            singles.filter(label=True).exists() and singles.filter(label=False).exists()
        ):
            raise RunError(
                f"snapshot {snapshot.name!r} has neither preference pairs nor both good and "
                "bad single answers in its train split (KTO needs both kinds of label)",
                field="snapshot",
            )
    elif kind in (TrainingRun.Kind.REWARD, TrainingRun.Kind.DPO):
        if not train.filter(is_tie=False).exists():
            raise RunError(
                f"snapshot {snapshot.name!r} has no preference pairs (other than ties) in its "
                "train split",
                field="snapshot",
            )
    elif kind == TrainingRun.Kind.SFT:
        if (
            datasets.snapshot_sft_source(snapshot=snapshot) == "chosen"
            and not train.filter(is_tie=False).exists()
        ):
            raise RunError(
                f"snapshot {snapshot.name!r} has no demonstrations and no chosen completions "
                "in its train split",
                field="snapshot",
            )
    elif kind in TrainingRun.RL_KINDS and not train.exists():
        raise RunError(f"snapshot {snapshot.name!r} has no train prompts", field="snapshot")


def _validated_config(kind: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        validated = from_dict(kind, dict(config or {}))
        distributed.config_check_deployment(validated)
        return validated.to_dict()
    except ConfigError as exc:
        raise RunError(str(exc), field=exc.field) from exc


def _free_artifacts_dir(pk: int) -> Path:
    """``PREFLAB_DATA_DIR/runs/<pk>``; ``<pk>-2``... if a folder is left from another
    database (a new run must never resume from a stranger's checkpoints)."""
    root = Path(settings.PREFLAB_DATA_DIR) / "runs"
    candidate, n = root / str(pk), 2
    while candidate.exists():
        candidate, n = root / f"{pk}-{n}", n + 1
    return candidate


# --- runs -----------------------------------------------------------------------------------


@transaction.atomic
def training_run_create(
    *,
    kind: str,
    base_model: PolicyModel,
    snapshot: DatasetSnapshot,
    config: Mapping[str, Any] | None = None,
    reward_run: TrainingRun | None = None,
    name: str = "",
    notes: str = "",
    user: User | None = None,
) -> TrainingRun:
    """Validate and queue a run of ``kind``; a worker starts it after the commit.

    Config fields left out take the base model's recommended settings for ``kind``
    (:mod:`training.recommendations`), then the kind's defaults.

    Raises :class:`RunError` (with ``field``) for a bad config value, a model that cannot
    be trained, a snapshot without the data the kind needs, or a wrong reward run.
    """
    if kind not in TrainingRun.Kind.values:
        raise RunError(
            f"unknown kind of run {kind!r} (known: {', '.join(TrainingRun.Kind.values)})",
            field="kind",
        )
    # What the caller leaves out, the base model's recommendations fill before the kind's
    # defaults (the launch form shows and sends them all).
    recommended = recommended_values(recommended_settings_for(model=base_model, kind=kind))
    stored_config = _validated_config(kind, {**recommended, **(config or {})})
    _check_trainable(base_model)
    _check_reward_base(kind, base_model)
    _check_policy_base(kind, base_model)
    _check_reward_run(kind, reward_run)
    _check_data(kind, snapshot, stored_config)
    name = name.strip()
    if name:
        if len(name) > _NAME_LENGTH:
            raise RunError(f"a name has at most {_NAME_LENGTH} characters", field="name")
        if TrainingRun.objects.filter(name=name).exists():
            raise RunError(f"a run named {name!r} already exists", field="name")
    else:
        name = free_name(
            TrainingRun, f"{KIND_SHORT_NAMES[kind]} · {base_model.name} · {snapshot.name}"
        )
    run = TrainingRun.objects.create(
        name=name,
        kind=kind,
        base_model=base_model,
        snapshot=snapshot,
        reward_run=reward_run,
        config=stored_config,
        notes=notes,
        created_by=user,
    )
    run.artifacts_dir = str(_free_artifacts_dir(run.pk))
    run.save(update_fields=["artifacts_dir"])
    run_lifecycle.enqueue(run)
    return run


class RunLifecycle(Lifecycle[TrainingRun]):
    """A run resumes from its latest checkpoint once its model, reward run and data are
    still there; a failure's traceback (of a bug) goes to the run's log tail."""

    def check_resume(self, job: TrainingRun) -> None:
        _check_trainable(job.base_model)
        _check_reward_run(job.kind, job.reward_run)
        _check_data(job.kind, job.snapshot, job.config)

    def resume_fields(self, job: TrainingRun) -> dict[str, Any]:
        checkpoint = latest_checkpoint(Path(job.artifacts_dir)) if job.artifacts_dir else None
        return {"checkpoint_dir": str(checkpoint) if checkpoint else ""}

    def failure_fields(self, pk: int, exc: Exception) -> dict[str, Any]:
        log = f"error: {exc}" if isinstance(exc, self.expected_errors) else traceback.format_exc()
        tail = TrainingRun.objects.filter(pk=pk).values_list("log_tail", flat=True).first()
        lines = [*(tail or "").splitlines(), *log.rstrip().splitlines()]
        return {"log_tail": "\n".join(lines[-200:])}


run_lifecycle = RunLifecycle(
    TrainingRun,
    errors=(RunError, TrainingError, ConfigError),
    task="training.tasks.training_run_execute",
    related=("base_model", "snapshot", "reward_run"),
)


# --- running a run (called by the Celery task) ------------------------------------------------


def _checkpoint_step(checkpoint: Path | None) -> int:
    match = _CHECKPOINT_STEP.search(checkpoint.name) if checkpoint else None
    return int(match.group(1)) if match else 0


def training_run_execute(*, run_id: int, heartbeat_interval: float = 5.0) -> str:
    """Train one queued run to the end. Safe to call twice: only one caller claims it.

    The trained model is registered in the same transaction that marks the run succeeded,
    after ``final/`` is written, so a worker killed at any point leaves either a running
    run (the watchdog fails it) or a finished one, never a half-registered model. Returns
    the run's status afterwards.
    """
    return run_lifecycle.execute(run_id, _train, heartbeat_interval=heartbeat_interval)


def run_spec(run: TrainingRun, *, resume_from: Path | None = None) -> RunSpec:
    """The runner's view of ``run``: its typed config, models, folders and checkpoint."""
    config = from_dict(run.kind, run.config)
    return RunSpec(
        kind=run.kind,  # type: ignore[arg-type]
        config=config,
        model_path=run.base_model.source,
        output_dir=Path(run.artifacts_dir),
        use_chat_template=run.base_model.use_chat_template,
        reward_model_path=run.reward_run.final_dir if run.reward_run else None,
        reward_stats=(
            RewardStats.from_dict(run.reward_run.reward_stats)
            if run.reward_run and run.reward_run.reward_stats
            else None
        ),
        resume_from=resume_from,
    )


def _train(run: TrainingRun) -> None:
    if not run.artifacts_dir:
        raise RunError("the run has no artifacts folder")
    _check_trainable(run.base_model)
    output_dir = Path(run.artifacts_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resume_from = latest_checkpoint(output_dir)
    # Points past the checkpoint belong to the attempt that died; this one redoes them.
    TrainingMetric.objects.filter(run=run, step__gt=_checkpoint_step(resume_from)).delete()
    reporter = RunReporter(run.pk, interval=settings.TRAINING_PROGRESS_MS / 1000)
    if resume_from is not None:
        reporter.log(f"attempt {run.attempts}: resuming from {resume_from.name}")
    try:
        if (
            run.kind in TrainingRun.RL_KINDS
            and run.reward_run is not None
            and not run.reward_run.reward_stats
            and from_dict(run.kind, run.config).normalize_rewards  # type: ignore[attr-defined]
        ):
            # A reward run that finished before runs stored their stats: compute them now,
            # once, on the reward run's own reference answers.
            reporter.log(
                f"reward run {run.reward_run.name!r} has no score statistics yet: "
                "computing them on its reference answers"
            )
            run.reward_run.reward_stats = reward_run_compute_stats(reward_run=run.reward_run)
        spec = run_spec(run, resume_from=resume_from)
        data = datasets.snapshot_run_data(
            snapshot=run.snapshot,
            kind=run.kind,
            listwise=getattr(spec.config, "loss", "pairwise") != "pairwise",
        )
        result = distributed.run_train(spec, data, reporter)
        stats: dict[str, Any] = {}
        if run.kind == TrainingRun.Kind.REWARD and result.final_dir is not None:
            stats = _reward_stats_or_empty(run, result.final_dir, reporter)
    finally:
        reporter.flush()
    if result.status == "cancelled":
        run_lifecycle.finish(
            run.pk,
            TrainingRun.Status.CANCELLED,
            checkpoint_dir=str(result.checkpoint_dir or ""),
            step=result.steps,
        )
        return
    _register(run, result, reward_stats=stats)


def _score_reference_answers(reward_run: TrainingRun, final_dir: str | Path) -> dict[str, Any]:
    from training.core.scoring import reward_stats_of, score_completions

    reference, items = datasets.snapshot_reference_answers(snapshot=reward_run.snapshot)
    if not items:
        raise RunError(f"snapshot {reward_run.snapshot.name!r} has no reference answers")
    scores = score_completions(
        str(final_dir),
        items,
        use_chat_template=reward_run.base_model.use_chat_template,
        max_length=int(reward_run.config.get("max_length", 512)),
    )
    return reward_stats_of(scores, reference=reference).to_dict()


def _reward_stats_or_empty(
    run: TrainingRun, final_dir: Path, reporter: RunReporter
) -> dict[str, Any]:
    """The new reward model's stats; empty (computed later, by the first RL run that needs
    them) when they cannot be computed, so a good model is never lost over them."""
    try:
        stats = _score_reference_answers(run, final_dir)
    except (RunError, TrainingError, OSError, ValueError) as exc:
        reporter.log(f"could not compute the score statistics: {exc}")
        return {}
    reporter.log(
        f"scores on {stats['count']} reference answers ({stats['reference']}): "
        f"mean {stats['mean']:.4g}, sd {stats['std']:.4g}"
    )
    return stats


def reward_run_compute_stats(*, reward_run: TrainingRun) -> dict[str, Any]:
    """Score ``reward_run``'s reference answers with its model and store their mean and
    spread on it (what PPO and GRPO normalise by); returns them.

    The reference answers are its snapshot's train demonstrations, else its chosen
    completions (:func:`training.datasets.snapshot_reference_answers`). Stats already
    stored are kept (and returned): a reward model does not change once trained.
    """
    reward_run_check_finished(reward_run)
    stats = _score_reference_answers(reward_run, reward_run.final_dir)
    TrainingRun.objects.filter(pk=reward_run.pk, reward_stats={}).update(reward_stats=stats)
    stored = TrainingRun.objects.values_list("reward_stats", flat=True).get(pk=reward_run.pk)
    return dict(stored)


@transaction.atomic
def _register(
    run: TrainingRun, result: RunResult, *, reward_stats: Mapping[str, Any] | None = None
) -> None:
    """Mark the run succeeded and register its model, both or neither."""
    if result.final_dir is None:
        raise TrainingError("the runner finished without writing a final model")
    total = TrainingRun.objects.filter(pk=run.pk).values_list("total_steps", flat=True).first()
    succeeded = run_lifecycle.finish(
        run.pk,
        TrainingRun.Status.SUCCEEDED,
        step=result.steps,
        total_steps=max(total or 0, result.steps),
        eval_metrics=_json_safe(result.eval_metrics),
        final_dir=str(result.final_dir),
        checkpoint_dir=str(result.checkpoint_dir or ""),
        reward_stats=dict(reward_stats or {}),
        heartbeat_at=timezone.now(),
    )
    if not succeeded:
        logger.warning("training run %s left the running state; nothing registered", run.pk)
        return
    if run.kind in TrainingRun.POLICY_KINDS:
        base = run.base_model
        snapshot = run.snapshot
        model = PolicyModel.objects.create(
            name=free_name(PolicyModel, run.name),
            backend=base.backend,
            source=str(result.final_dir),
            use_chat_template=base.use_chat_template,
            parent=base,
            description=(
                f"Trained by run {run.name!r} ({run.get_kind_display()}, {result.steps} steps) "
                f"from {base.name!r} on snapshot {snapshot.name!r} "
                f"(content hash {snapshot.content_hash})."
            ),
            created_by=run.created_by,
        )
        TrainingRun.objects.filter(pk=run.pk).update(output_model=model)


def _json_safe(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    from training.reporting import json_safe_metrics

    return json_safe_metrics(metrics)
