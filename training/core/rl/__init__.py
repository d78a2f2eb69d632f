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
- **Several processes** (``num_processes > 1``, launched by torchrun through
  :func:`~training.core.launch.run_launched`): each rank samples its share of a rollout's
  prompts, the rollout is gathered, micro-batches are dealt to the ranks and their gradients
  summed; see :mod:`training.core.rl.distributed`.

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

from training.core.rl.checkpoint import Policy
from training.core.rl.experience import Rollout
from training.core.rl.runner import run_rl
from training.core.rl.seeds import mix_seed
from training.core.rl.update import RLTrainer

__all__ = ["Policy", "RLTrainer", "Rollout", "mix_seed", "run_rl"]
