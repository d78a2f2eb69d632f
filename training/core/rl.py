"""What PPO and GRPO/RLOO share: rollouts, rewards, the KL penalty, checkpoints, the loop.

:func:`run_rl` is the runner behind ``kind="ppo"`` (:mod:`training.core.ppo`) and
``kind="grpo"`` (:mod:`training.core.grpo`); each kind brings an :class:`RLTrainer`
subclass whose :meth:`RLTrainer.rollout` turns one sampled, scored rollout into updates.
Everything else is here, once:

- **Rollouts.** The next ``rollout_batch_prompts`` prompts of a shuffled pass (each epoch
  reshuffled from ``seed``; a rollout may straddle two epochs), ``rollout_k`` completions
  of each sampled from the current policy through a
  :class:`~training.core.rollouts.RolloutSampler` (transformers or an in-process vLLM
  engine), prompts encoded as the generation backends encode them, a completion ending at
  its EOS (which counts as one of its tokens).
- **Rewards.** The reward model scores each ``(prompt, completion text)``
  (:class:`~training.core.scoring.RewardScorer`); :func:`~training.core.losses.reward_from_score`
  normalises the score with the reward run's stored mean and spread on its reference
  answers (``normalize_rewards``, :class:`~training.core.scoring.RewardStats` in
  ``spec.reward_stats``), clips it (``reward_clip``) and charges ``length_penalty`` per
  token. A run that asks for normalisation without stats is refused before anything loads.
- **KL.** Per-token log-probabilities of the policy and of the frozen reference (the
  base model; with LoRA the policy with its adapters disabled), from ``logits /
  temperature``; ``kl`` is their per-completion sum with ``kl_estimator``, and beta is
  fixed or adaptive (``adaptive_kl``, Ziegler et al. 2019), carried in checkpoints.
- **No dropout**, **reproducible by construction** (all randomness of rollout ``r`` is
  derived from ``(seed, r)``), **checkpoints** written to a temporary folder and renamed
  (``policy/``, ``optimizer.pt``, ``rng_state.pt``, ``ppo_state.json`` and, for PPO,
  ``value_head.pt``), a stop asked before each rollout and after each epoch over it.

Metrics every kind reports per rollout: ``score`` (the reward model's raw score),
``score/task`` (the score after normalisation, clipping and the length penalty),
``kl``, ``kl_coef``, ``reward`` (``score/task - kl_coef * kl``), ``entropy``,
``response_length`` and, when the reward run's stats are known, ``beyond_reference``
(the share of completions scored above every reference answer: text where the reward
model's judgement has no data behind it); at the end ``eval/score``, ``eval/kl`` and
``eval/response_length`` on the held-out prompts.

Nothing here imports Django; torch, transformers, peft and vLLM are imported when a run
starts.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.backends.base import BackendError, PromptInput
from generation.backends.prompting import encode_prompt
from training.core.configs import PPOConfig, RLConfig
from training.core.data import PromptData
from training.core.reporting import ProgressReporter
from training.core.rollouts import RolloutSampler, TransformersRolloutSampler
from training.core.runners import CHECKPOINTS, FINAL, RunResult, RunSpec, TrainingError

if TYPE_CHECKING:
    import torch

__all__ = ["Policy", "RLTrainer", "Rollout", "mix_seed", "run_rl"]

_STATE_FILE = "ppo_state.json"
_POLICY_DIR = "policy"
_VALUE_HEAD_FILE = "value_head.pt"
_OPTIMIZER_FILE = "optimizer.pt"
_RNG_FILE = "rng_state.pt"


# --------------------------------------------------------------------------------------
# Tensors of one rollout
# --------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """A rollout's sequences and everything computed from them, ``N`` completions.

    ``input_ids``/``attention_mask`` are ``[N, P + R]``: prompts left-padded to ``P``,
    completions right-padded to ``R``. The ``[N, R]`` tensors are over completion tokens.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor | None
    """The value head's values ``[N, R]``; None for a kind without one (GRPO)."""
    entropy: torch.Tensor
    """Mean entropy of the policy's next-token distributions over the rollout ``[]``."""


def _pack(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids [N, P+R], attention_mask, response_ids [N, R], response_mask [N, R])``."""
    import torch

    n = len(responses)
    width = max(len(p) for p in prompts)
    length = max(len(r) for r in responses)
    input_ids = torch.full((n, width + length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width + length), dtype=torch.long)
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        input_ids[i, width - len(prompt) : width] = torch.tensor(prompt, dtype=torch.long)
        input_ids[i, width : width + len(response)] = torch.tensor(response, dtype=torch.long)
        attention_mask[i, width - len(prompt) : width + len(response)] = 1
    return input_ids, attention_mask, input_ids[:, width:], attention_mask[:, width:].bool()


def _trim(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Drop the columns of a micro-batch that are padding in every row.

    Returns ``(input_ids, attention_mask, R)``: the left padding all rows share is cut and
    the completions end at the longest one, ``R`` tokens.
    """
    response_width = int(response_mask.sum(dim=-1).max().item())
    prompt_width = input_ids.shape[1] - response_mask.shape[1]
    first = int(attention_mask[:, :prompt_width].argmax(dim=-1).min().item())
    end = prompt_width + response_width
    return input_ids[:, first:end], attention_mask[:, first:end], response_width


def _forward(
    model: Any,
    value_head: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_width: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (``/ temperature``, float32) and values for the last ``response_width`` tokens.

    Shapes: ``[B, T]`` in -> ``(logits [B, R, V], values [B, R] or None)``, where position
    ``t`` holds the prediction made *before* completion token ``t`` (the shift is done
    here). Values are computed only when ``value_head`` is given. Position ids come from
    the attention mask, as ``generate`` computes them for left-padded prompts.
    """
    position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_hidden_states=value_head is not None,
        logits_to_keep=response_width + 1,
        use_cache=False,
    )
    logits = output.logits[:, :-1].float() / temperature
    values = None
    if value_head is not None:
        hidden = output.hidden_states[-1][:, -response_width - 1 : -1]
        values = value_head(hidden.to(value_head.weight.dtype)).squeeze(-1).float()
    return logits, values


# --------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes (unlike ``hash``)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value * 6364136223846793005 + part + 1442695040888963407) % (1 << 63)
    return value


def _epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    order = list(range(n))
    random.Random(mix_seed(seed, 0, epoch)).shuffle(order)
    return order


def _prompt_indices(seed: int, start: int, count: int, n: int) -> list[int]:
    """Indices of the prompts ``start .. start + count`` of the endless shuffled stream."""
    orders: dict[int, list[int]] = {}
    picked = []
    for i in range(start, start + count):
        epoch, position = divmod(i, n)
        if epoch not in orders:
            orders[epoch] = _epoch_order(seed, epoch, n)
        picked.append(orders[epoch][position])
    return picked


@dataclass
class Policy:
    """What :func:`_load_policy` loads: the models, the optimizer and where the run stands."""

    model: Any
    ref_model: Any
    """A frozen copy of the base model, or None with LoRA (the adapters are disabled)."""
    value_head: Any
    """PPO's ``Linear(hidden, 1)`` on the policy's last hidden state; None for GRPO."""
    optimizer: Any
    tokenizer: Any
    rollouts_done: int
    kl_coef: float


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

    device = resolve_device(spec.device)
    reporter.log(f"loading the reward model from {spec.reward_model_path}")
    if config.normalize_rewards and spec.reward_stats is not None:
        stats = spec.reward_stats
        reporter.log(
            f"normalising scores: (score - {stats.mean:.4g}) / {stats.std:.4g} "
            f"(the reward model on {stats.count} reference answers)"
        )
    scorer = _load_scorer(spec, config, device)
    reporter.log(f"loading the policy from {spec.model_path} on {device}")
    try:
        policy = _load_policy(spec, config, device, value_head=value_head)
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

    def save() -> Path:
        nonlocal saved_at
        path = _save_checkpoint(
            Path(spec.output_dir) / CHECKPOINTS / f"checkpoint-{rollout}",
            policy,
            state={
                "rollout": rollout,
                "kl_coef": controller.value,
                "prompts_consumed": rollout * per_rollout,
                "use_lora": config.use_lora,
            },
        )
        saved_at = rollout
        reporter.log(f"saved checkpoint {path.name}")
        return path

    while rollout < total:
        if reporter.should_stop():
            if saved_at != rollout:
                checkpoint_dir = save()
            scorer.close()
            return RunResult("cancelled", rollout, None, checkpoint_dir)
        indices = _prompt_indices(config.seed, rollout * per_rollout, per_rollout, len(train_ids))
        metrics = trainer.rollout(
            rollout,
            [train_prompts[i] for i in indices],
            [train_ids[i] for i in indices],
            kl_coef=controller.value,
            should_stop=reporter.should_stop,
        )
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
    final_dir = save_final(policy.model, policy.tokenizer, Path(spec.output_dir) / FINAL)
    reporter.log(f"saved the trained model to {final_dir}")
    return RunResult("succeeded", rollout, final_dir, checkpoint_dir, eval_metrics)


class RLTrainer:
    """Rollouts, rewards and evaluation for one run's loaded policy and reward model.

    A kind subclasses it and implements :meth:`rollout`.
    """

    def __init__(
        self, policy: Policy, scorer: Any, config: RLConfig, device: str, spec: RunSpec
    ) -> None:
        from training.core.hf import use_bf16

        self.policy = policy
        self.scorer = scorer
        self.config = config
        self.device = device
        self.use_chat_template = spec.use_chat_template
        self.reward_stats = spec.reward_stats if config.normalize_rewards else None
        # The best score the reward model gave a reference answer, when known.
        self.reference_max = spec.reward_stats.max if spec.reward_stats is not None else None
        self.bf16 = use_bf16(device)
        self.tokenizer = policy.tokenizer
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.max_new_tokens = min(config.max_new_tokens, config.max_length - 1)
        self.eos_ids = _eos_ids(policy.model, self.tokenizer)
        self.sampler: RolloutSampler
        if config.rollout_backend == "vllm":
            from training.core.rollouts import VLLMRolloutSampler

            self.sampler = VLLMRolloutSampler(
                spec.model_path,
                eos_ids=self.eos_ids,
                max_model_len=config.max_length,
                gpu_memory_utilization=config.vllm_gpu_memory_utilization,
            )
        else:
            self.sampler = TransformersRolloutSampler(
                policy.model,
                eos_ids=self.eos_ids,
                pad_id=self.pad_id,
                device=device,
                autocast=self.autocast,
            )

    def autocast(self) -> AbstractContextManager[Any]:
        """bf16 mixed precision on a CUDA device that has it; nothing elsewhere."""
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def encode(self, prompt: PromptInput) -> list[int]:
        """The prompt's ids as generation encodes them, keeping room for the completion."""
        try:
            ids = encode_prompt(self.tokenizer, prompt, self.use_chat_template)
        except BackendError as exc:
            raise TrainingError(f"cannot encode a prompt: {exc}") from exc
        return ids[-max(1, self.config.max_length - self.max_new_tokens) :]

    def sample_and_score(
        self, prompts: list[PromptInput], prompt_ids: list[list[int]], *, n: int, seed: int
    ) -> tuple[Rollout, torch.Tensor]:
        """``n`` completions per prompt from the current policy, and their scores ``[N]``."""
        import torch

        responses = self.sampler.sample(
            prompt_ids,
            n=n,
            max_new_tokens=self.max_new_tokens,
            temperature=self.config.temperature,
            seed=seed,
        )
        texts = _decode(self.tokenizer, responses, self.eos_ids)
        items = [(prompts[i // n], text) for i, text in enumerate(texts)]
        scores = torch.tensor(
            self.scorer.score(items, batch_size=self.config.batch_size), dtype=torch.float32
        )
        rows = [ids for ids in prompt_ids for _ in range(n)]
        return self._score_tokens(rows, responses), scores

    def task_rewards(self, scores: torch.Tensor, batch: Rollout) -> torch.Tensor:
        """Each completion's reward before the KL penalty ``[N]``: normalised, clipped and
        charged for its length as the config says (:func:`~training.core.losses.reward_from_score`)."""
        from training.core.losses import reward_from_score

        config, stats = self.config, self.reward_stats
        return reward_from_score(
            scores,
            batch.response_mask.sum(dim=-1),
            mean=stats.mean if stats is not None else 0.0,
            std=stats.std if stats is not None else 1.0,
            clip=config.reward_clip,
            length_penalty=config.length_penalty,
        )

    def rollout(
        self,
        index: int,
        prompts: list[PromptInput],
        prompt_ids: list[list[int]],
        *,
        kl_coef: float,
        should_stop: Callable[[], bool],
    ) -> dict[str, float]:
        """Sample, score and optimise on rollout ``index`` (0-based); returns its metrics,
        ``kl`` among them (the controller adapts beta to it).

        ``should_stop`` is asked after each epoch over the rollout: a stop ends it early.
        """
        raise NotImplementedError

    def sequence_kl(self, batch: Rollout) -> torch.Tensor:
        """Each completion's KL to the reference ``[N]``: the sum over its tokens of the
        per-token ``kl_estimator`` estimate."""
        from training.core.losses import masked_sum, per_token_kl

        kl = per_token_kl(batch.logprobs, batch.ref_logprobs, self.config.kl_estimator)
        return masked_sum(kl, batch.response_mask, dim=-1)

    def rollout_metrics(
        self,
        batch: Rollout,
        scores: torch.Tensor,
        task: torch.Tensor,
        kl: torch.Tensor,
        kl_coef: float,
    ) -> dict[str, float]:
        """The metrics every kind reports for a rollout (see the module docstring)."""
        metrics = {
            "score": float(scores.mean()),
            "score/task": float(task.mean()),
            "kl": float(kl.mean()),
            "kl_coef": float(kl_coef),
            "reward": float((task - kl_coef * kl).mean()),
            "entropy": float(batch.entropy),
            "response_length": float(batch.response_mask.sum(dim=-1).float().mean()),
        }
        if self.reference_max is not None:
            # Scored above every reference answer: where the reward model has no data.
            metrics["beyond_reference"] = float((scores > self.reference_max).float().mean())
        return metrics

    def optimise(
        self,
        index: int,
        batch: Rollout,
        advantages: torch.Tensor,
        returns: torch.Tensor | None,
        should_stop: Callable[[], bool],
    ) -> dict[str, float]:
        """``ppo_epochs`` passes over rollout ``index`` in shuffled minibatches, one optimizer
        step each; returns the loss metrics averaged over the steps.

        ``advantages`` are ``[N, R]`` (per token); ``returns`` are the value head's targets
        (PPO) or None (no value head, no value loss). ``should_stop`` is asked after each
        epoch: a stop ends the rollout early (it counts as done; the caller saves a
        checkpoint).
        """
        import torch

        config = self.config
        sums: dict[str, float] = {}
        updates = 0
        for epoch in range(config.ppo_epochs):
            generator = torch.Generator().manual_seed(mix_seed(config.seed, 2, index, epoch))
            order = torch.randperm(len(batch.response_mask), generator=generator)
            for start in range(0, len(order), config.minibatch_size):
                minibatch = order[start : start + config.minibatch_size]
                for name, value in self._update(batch, advantages, returns, minibatch).items():
                    sums[name] = sums.get(name, 0.0) + value
                updates += 1
            if should_stop():
                break
        return {name: value / max(updates, 1) for name, value in sums.items()}

    def _update(
        self,
        batch: Rollout,
        advantages: torch.Tensor,
        returns: torch.Tensor | None,
        minibatch: torch.Tensor,
    ) -> dict[str, float]:
        """One optimizer step on ``minibatch`` (row indices), micro-batch by micro-batch:
        the clipped policy loss, plus ``vf_coef`` times the clipped value loss with
        ``returns``."""
        from training.core.losses import ppo_policy_loss, ppo_value_loss, token_logps

        config, device = self.config, self.device
        metrics: dict[str, float] = {}
        for start in range(0, len(minibatch), config.batch_size):
            rows = minibatch[start : start + config.batch_size]
            ids, attn, width = _trim(
                batch.input_ids[rows], batch.attention_mask[rows], batch.response_mask[rows]
            )
            mask = batch.response_mask[rows, :width].to(device)
            with self.autocast():
                logits, values = _forward(
                    self.policy.model,
                    self.policy.value_head,
                    ids.to(device),
                    attn.to(device),
                    width,
                    config.temperature,
                )
            logprobs = token_logps(logits, batch.response_ids[rows, :width].to(device), mask)
            loss, loss_metrics = ppo_policy_loss(
                logprobs,
                batch.logprobs[rows, :width].to(device),
                advantages[rows, :width].to(device),
                mask,
                config.clip_range,
            )
            if returns is not None:
                assert isinstance(config, PPOConfig)
                assert values is not None and batch.values is not None
                value_loss, value_metrics = ppo_value_loss(
                    values,
                    batch.values[rows, :width].to(device),
                    returns[rows, :width].to(device),
                    mask,
                    config.clip_range_value,
                )
                loss = loss + config.vf_coef * value_loss
                loss_metrics.update(value_metrics)
            # Each micro-batch's loss is a mean over its tokens; weigh it by its share of
            # the minibatch's completions so the summed gradient is the minibatch's.
            share = len(rows) / len(minibatch)
            (loss * share).backward()
            for name, value in {"loss": loss.detach(), **loss_metrics}.items():
                metrics[name] = metrics.get(name, 0.0) + float(value) * share
        self.optimizer_step()
        return metrics

    def optimizer_step(self) -> None:
        """Clip the summed gradients to ``max_grad_norm``, step, and zero them."""
        import torch

        optimizer = self.policy.optimizer
        if self.config.max_grad_norm > 0:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _score_tokens(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> Rollout:
        """Policy and reference log-probs, values and entropy of sampled completions."""
        import torch

        from training.core.losses import entropy_from_logits, token_logps

        config, device, model = self.config, self.device, self.policy.model
        input_ids, attention_mask, response_ids, response_mask = _pack(
            prompts, responses, self.pad_id
        )
        n, length = response_mask.shape
        logprobs = torch.zeros((n, length))
        ref_logprobs = torch.zeros((n, length))
        value_head = self.policy.value_head
        values = torch.zeros((n, length)) if value_head is not None else None
        entropy_sum = torch.zeros(())
        with torch.no_grad():
            for start in range(0, n, config.batch_size):
                rows = slice(start, start + config.batch_size)
                ids, attn, width = _trim(input_ids[rows], attention_mask[rows], response_mask[rows])
                ids, attn = ids.to(device), attn.to(device)
                mask = response_mask[rows, :width].to(device)
                labels = response_ids[rows, :width].to(device)
                with self.autocast():
                    logits, micro_values = _forward(
                        model, value_head, ids, attn, width, config.temperature
                    )
                    ref_logits = self._reference_logits(ids, attn, width)
                logprobs[rows, :width] = token_logps(logits, labels, mask).cpu()
                ref_logprobs[rows, :width] = token_logps(ref_logits, labels, mask).cpu()
                if values is not None and micro_values is not None:
                    values[rows, :width] = torch.where(mask, micro_values, 0.0).cpu()
                # A sum here, divided by all tokens below: the mean over the rollout's tokens.
                entropy_sum += (entropy_from_logits(logits, mask) * mask.sum()).cpu()
        entropy = entropy_sum / response_mask.sum().clamp(min=1)
        return Rollout(
            input_ids,
            attention_mask,
            response_ids,
            response_mask,
            logprobs,
            ref_logprobs,
            values,
            entropy,
        )

    def _reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int
    ) -> torch.Tensor:
        temperature = self.config.temperature
        if self.policy.ref_model is not None:
            logits, _ = _forward(
                self.policy.ref_model, None, input_ids, attention_mask, width, temperature
            )
            return logits
        with self.policy.model.disable_adapter():  # the base model under the LoRA policy
            logits, _ = _forward(
                self.policy.model, None, input_ids, attention_mask, width, temperature
            )
        return logits

    def evaluate(self, prompts: list[PromptInput]) -> dict[str, float]:
        """``eval/score``, ``eval/kl`` and ``eval/response_length``: means over one sampled
        completion per prompt."""

        scores: list[float] = []
        kls: list[float] = []
        lengths: list[float] = []
        chunk = self.config.rollout_batch_prompts
        for start in range(0, len(prompts), chunk):
            part = prompts[start : start + chunk]
            batch, part_scores = self.sample_and_score(
                part,
                [self.encode(p) for p in part],
                n=1,
                seed=mix_seed(self.config.seed, 3, start),
            )
            kls.extend(self.sequence_kl(batch).tolist())
            lengths.extend(batch.response_mask.sum(dim=-1).float().tolist())
            scores.extend(part_scores.tolist())
        return {
            "eval/score": sum(scores) / len(scores),
            "eval/kl": sum(kls) / len(kls),
            "eval/response_length": sum(lengths) / len(lengths),
        }


# --------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------


def _load_scorer(spec: RunSpec, config: RLConfig, device: str) -> Any:
    from training.core.scoring import RewardScorer

    assert spec.reward_model_path is not None
    try:
        return RewardScorer(
            spec.reward_model_path,
            device=device,
            max_length=config.max_length,
            use_chat_template=spec.use_chat_template,
        )
    except TrainingError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(
            f"cannot load the reward model {spec.reward_model_path}: {exc}"
        ) from exc


def _load_policy(spec: RunSpec, config: RLConfig, device: str, *, value_head: bool) -> Policy:
    """The policy (and reference), PPO's value head (``value_head``) and the optimizer;
    restored when resuming."""
    import torch

    from training.core.hf import apply_lora, load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(spec.model_path)
    tokenizer.padding_side = "left"
    state: dict[str, Any] = {}
    resume = Path(spec.resume_from) if spec.resume_from else None
    if resume is not None:
        try:
            state = json.loads((resume / _STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise TrainingError(f"cannot resume from {resume}: {exc}") from exc
        if bool(state.get("use_lora")) != config.use_lora:
            raise TrainingError(f"checkpoint {resume.name} was saved with another use_lora")

    ref_model = None
    if config.use_lora:
        base = load_causal_lm(spec.model_path, tokenizer)
        if resume is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, str(resume / _POLICY_DIR), is_trainable=True)
        else:
            # LoRA's A matrices start random: seed them, so a run is reproducible.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = apply_lora(base, config, task="CAUSAL_LM")
    else:
        source = str(resume / _POLICY_DIR) if resume is not None else spec.model_path
        model = load_causal_lm(source, tokenizer)
        ref_model = load_causal_lm(spec.model_path, tokenizer)
        ref_model.requires_grad_(False)
        ref_model.to(device).eval()
    model.to(device).eval()

    head = None
    params = [p for p in model.parameters() if p.requires_grad]
    if value_head:
        head = torch.nn.Linear(int(model.config.hidden_size), 1)
        # Zero start: values begin at 0, and the first advantages are returns, not head noise.
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        head.to(device)
        params += list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    if resume is not None:
        if head is not None:
            head.load_state_dict(torch.load(resume / _VALUE_HEAD_FILE, map_location=device))
        optimizer.load_state_dict(torch.load(resume / _OPTIMIZER_FILE, map_location=device))
        _set_rng_state(torch.load(resume / _RNG_FILE, weights_only=False))
    return Policy(
        model=model,
        ref_model=ref_model,
        value_head=head,
        optimizer=optimizer,
        tokenizer=tokenizer,
        rollouts_done=int(state.get("rollout", 0)),
        kl_coef=float(state.get("kl_coef", config.init_kl_coef)),
    )


def _save_checkpoint(path: Path, policy: Policy, *, state: dict[str, Any]) -> Path:
    """Write a resumable checkpoint to ``path`` via a temporary folder and a rename."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # With LoRA, save_pretrained writes only the adapter; the base comes from model_path.
    policy.model.save_pretrained(str(tmp / _POLICY_DIR), safe_serialization=True)
    policy.tokenizer.save_pretrained(str(tmp / _POLICY_DIR))
    if policy.value_head is not None:
        torch.save(policy.value_head.state_dict(), tmp / _VALUE_HEAD_FILE)
    torch.save(policy.optimizer.state_dict(), tmp / _OPTIMIZER_FILE)
    torch.save(_rng_state(), tmp / _RNG_FILE)
    (tmp / _STATE_FILE).write_text(json.dumps(state, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos])]


def _decode(
    tokenizer: Any, responses: Sequence[Sequence[int]], eos_ids: Sequence[int]
) -> list[str]:
    """Completion texts, without the EOS (the reward model's encoding appends its own)."""
    stops = set(eos_ids)
    return [
        tokenizer.decode(
            list(r[:-1]) if r and r[-1] in stops else list(r), skip_special_tokens=True
        )
        for r in responses
    ]
