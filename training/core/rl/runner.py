"""The loop of an RL run: :func:`run_rl` checks the run, loads the models, and
:func:`_train` drives the rollouts, checkpoints, evaluation and ``final/``."""

from __future__ import annotations

import math
from pathlib import Path

from training.core.configs import RLConfig
from training.core.data import PromptData
from training.core.reporting import ProgressReporter
from training.core.rl.checkpoint import load_policy, load_scorer, save_checkpoint
from training.core.rl.seeds import prompt_indices
from training.core.rl.update import RLTrainer
from training.core.runners import CHECKPOINTS, FINAL, RunResult, RunSpec, TrainingError

__all__ = ["run_rl"]


def run_rl(
    spec: RunSpec,
    data: PromptData,
    reporter: ProgressReporter,
    *,
    config_class: type[RLConfig],
    trainer_class: type[RLTrainer],
    value_head: bool,
) -> RunResult:
    """Train ``spec.model_path`` against ``spec.reward_model_path`` on ``data``.

    ``trainer_class`` does each rollout's updates; ``value_head`` gives the policy PPO's
    value head. Raises :class:`TrainingError` when the config is not a ``config_class``,
    there are no training prompts, no reward model, rewards to normalise without the
    reward model's stats, a model folder that is missing or cannot be loaded, or
    ``rollout_backend="vllm"`` without a usable vLLM. The vLLM engine is closed however
    the run ends.
    """
    from training.core.hf import resolve_device
    from training.core.rl import distributed

    config = spec.config
    name = spec.kind.upper()
    if not isinstance(config, config_class):
        raise TrainingError(
            f"a {name} run needs a {config_class.__name__}, got {type(config).__name__}"
        )
    config.validate()
    if not isinstance(data, PromptData):
        raise TrainingError(f"a {name} run needs prompts (PromptData)")
    if not data.train:
        raise TrainingError("there are no prompts to train on")
    if not spec.reward_model_path:
        raise TrainingError(f"{name} needs a reward model: choose a finished reward run")
    if not Path(spec.reward_model_path).expanduser().is_dir():
        raise TrainingError(f"reward model folder {spec.reward_model_path} does not exist")
    if config.normalize_rewards and spec.reward_stats is None:
        raise TrainingError(
            "normalize_rewards needs the reward model's score mean and spread on its "
            "reference answers, which a reward run stores when it finishes; set "
            "normalize_rewards off to train on raw scores"
        )

    device, joined = distributed.join(resolve_device(spec.device))
    result = _load_and_train(spec, data, reporter, config, device, trainer_class, value_head)
    # Only after a run that ended well: a rank that raised leaves the group as it is
    # (torchrun stops the others), since leaving could wait for a peer already gone.
    if joined:
        distributed.leave()
    return result


def _load_and_train(
    spec: RunSpec,
    data: PromptData,
    reporter: ProgressReporter,
    config: RLConfig,
    device: str,
    trainer_class: type[RLTrainer],
    value_head: bool,
) -> RunResult:
    """Load the reward model, the policy and the trainer on ``device``, then train."""
    reporter.log(f"loading the reward model from {spec.reward_model_path}")
    if config.normalize_rewards and spec.reward_stats is not None:
        stats = spec.reward_stats
        reporter.log(
            f"normalising scores: (score - {stats.mean:.4g}) / {stats.std:.4g} "
            f"(the reward model on {stats.count} reference answers)"
        )
    scorer = load_scorer(spec, config, device)
    reporter.log(f"loading the policy from {spec.model_path} on {device}")
    try:
        policy = load_policy(spec, config, device, value_head=value_head)
        if config.rollout_backend == "vllm":
            reporter.log(f"starting a vLLM engine on {spec.model_path} for the rollouts")
        trainer = trainer_class(policy, scorer, config, device, spec)
    except BaseException:
        scorer.close()
        raise
    try:
        return _train(trainer, spec, data, reporter)
    finally:
        trainer.sampler.close()
        scorer.close()


def _train(
    trainer: RLTrainer, spec: RunSpec, data: PromptData, reporter: ProgressReporter
) -> RunResult:
    """The rollouts, checkpoints, evaluation and ``final/`` of :func:`run_rl`."""
    from training.core.hf import save_final
    from training.core.losses import AdaptiveKLController, FixedKLController, KLController
    from training.core.rl import distributed

    config, policy, scorer = trainer.config, trainer.policy, trainer.scorer
    if policy.rollouts_done:
        # The engine starts from the base model; a resumed policy has moved away from it.
        trainer.sampler.load_weights(policy.model)
    train_prompts = list(data.train)
    train_ids = [trainer.encode(p) for p in train_prompts]

    controller: KLController
    if config.adaptive_kl:
        controller = AdaptiveKLController(policy.kl_coef, config.kl_target, config.kl_horizon)
    else:
        controller = FixedKLController(policy.kl_coef)

    per_rollout = config.rollout_batch_prompts
    if config.max_steps > 0:
        total = config.max_steps
    else:
        total = math.ceil(config.num_epochs * len(train_ids) / per_rollout)
    rollout = policy.rollouts_done
    checkpoint_dir: Path | None = spec.resume_from if rollout else None
    saved_at = rollout if rollout else -1

    # In several processes rank r samples the prompts r * share .. (r + 1) * share of each
    # rollout (the weights, optimizer and KL coefficient are the same on every rank).
    rank, share = distributed.rank(), per_rollout // distributed.world_size()

    def save() -> Path:
        nonlocal saved_at
        path = Path(spec.output_dir) / CHECKPOINTS / f"checkpoint-{rollout}"
        if rank == 0:
            save_checkpoint(
                path,
                policy,
                state={
                    "rollout": rollout,
                    "kl_coef": controller.value,
                    "prompts_consumed": rollout * per_rollout,
                    "use_lora": config.use_lora,
                },
            )
            reporter.log(f"saved checkpoint {path.name}")
        distributed.barrier()  # written before any rank goes on (or returns it)
        saved_at = rollout
        return path

    while rollout < total:
        if reporter.should_stop():
            if saved_at != rollout:
                checkpoint_dir = save()
            scorer.close()
            return RunResult("cancelled", rollout, None, checkpoint_dir)
        indices = prompt_indices(config.seed, rollout * per_rollout, per_rollout, len(train_ids))
        mine = indices[rank * share : (rank + 1) * share]
        metrics = trainer.rollout(
            rollout,
            [train_prompts[i] for i in mine],
            [train_ids[i] for i in mine],
            kl_coef=controller.value,
            should_stop=reporter.should_stop,
        )
        # The whole rollout's mean KL (every rank has it), so beta moves alike everywhere.
        controller.update(metrics["kl"], len(indices) * config.rollout_k)
        rollout += 1
        if rollout < total or data.eval:
            trainer.sampler.load_weights(policy.model)  # a no-op for the transformers sampler
        if rollout % config.logging_steps == 0:
            reporter.report(rollout, total, metrics)
        if config.save_steps and rollout % config.save_steps == 0 and rollout < total:
            checkpoint_dir = save()

    if saved_at != rollout:
        checkpoint_dir = save()
    eval_metrics: dict[str, float] = {}
    if data.eval:
        eval_metrics = trainer.evaluate(list(data.eval))
        reporter.report(rollout, total, eval_metrics)
    # Free the engine and the reward model before merging LoRA into a copy of the weights.
    trainer.sampler.close()
    scorer.close()
    final_dir = Path(spec.output_dir) / FINAL
    if rank == 0:
        final_dir = save_final(policy.model, policy.tokenizer, final_dir)
        reporter.log(f"saved the trained model to {final_dir}")
    distributed.barrier()
    return RunResult("succeeded", rollout, final_dir, checkpoint_dir, eval_metrics)
