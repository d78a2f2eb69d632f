"""Critic-free RL from a reward model: GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024).

:func:`run_grpo` is the runner for ``kind="grpo"``. It is PPO without the value head: the
rollouts, reward normalisation, KL penalty, adaptive beta, checkpoints, vLLM sampling and
resume are PPO's own (:mod:`training.core.rl`); only the advantages differ. Each rollout:

1. Samples ``rollout_k`` (>= 2) completions of each of ``rollout_batch_prompts`` prompts,
   scores them with the reward model and turns each score into a task reward (normalised
   by the reward run's stats, clipped, length-penalised), as PPO does.
2. Each completion's reward is ``R = task - beta * KL``, its KL to the reference summed
   over its tokens: the same KL penalty, estimator and controller as PPO, applied to the
   whole sequence (RLOO does so; GRPO's paper puts a k3 KL term in the loss instead, but
   one KL handling for both kinds keeps beta, the adaptive target and the run page's
   curves comparable with PPO's).
3. Advantages against the prompt's group (:func:`~training.core.losses.group_advantages`):
   ``advantage="grpo"``: ``(R - mean) / sd`` of the group; ``"rloo"``: ``R`` minus the
   mean of the other samples. Every token of a completion gets its completion's advantage.
4. ``ppo_epochs`` passes of PPO's clipped surrogate (``clip_range``) in minibatches, the
   loss a mean over the minibatch's tokens, as PPO's policy loss.

No value head, so nothing of the policy's trunk is spent on a value function, one forward
pass fewer per micro-batch, and no ``value_head.pt`` in checkpoints. Reported per rollout:
PPO's shared metrics (``score``, ``score/task``, ``kl``, ``kl_coef``, ``reward``,
``entropy``, ``response_length``), ``loss``, ``loss/policy``, ``policy/clipfrac``,
``policy/approx_kl``, ``policy/ratio``, and ``reward/group_std``, the mean spread of the
reward within a prompt's group (0 means every sample of a prompt scored the same, and
the group gives no signal). At the end, ``eval/score``, ``eval/kl`` and
``eval/response_length`` on the held-out prompts.

Nothing here imports Django; torch is imported when a run starts.
"""

from __future__ import annotations

from collections.abc import Callable

from generation.backends.base import PromptInput
from training.core.configs import GRPOConfig
from training.core.data import PromptData
from training.core.reporting import ProgressReporter
from training.core.rl import RLTrainer, run_rl
from training.core.runners import RunResult, RunSpec

__all__ = ["run_grpo"]


def run_grpo(spec: RunSpec, data: PromptData, reporter: ProgressReporter) -> RunResult:
    """Train ``spec.model_path`` with GRPO or RLOO against ``spec.reward_model_path``.

    See the module docstring for the algorithm and :func:`training.core.rl.run_rl` for
    what is refused with a :class:`~training.core.runners.TrainingError`.
    """
    return run_rl(
        spec,
        data,
        reporter,
        config_class=GRPOConfig,
        trainer_class=_GRPOTrainer,
        value_head=False,
    )


class _GRPOTrainer(RLTrainer):
    """Group-relative advantages on the shared rollouts; PPO's clipped policy loss."""

    config: GRPOConfig

    def rollout(
        self,
        index: int,
        prompts: list[PromptInput],
        prompt_ids: list[list[int]],
        *,
        kl_coef: float,
        should_stop: Callable[[], bool],
    ) -> dict[str, float]:
        import torch

        from training.core.losses import group_advantages

        config = self.config
        k = config.rollout_k
        # The whole rollout's, when several processes each sampled their share of it.
        batch, scores = self.experience(index, prompts, prompt_ids)
        task = self.task_rewards(scores, batch)
        kl = self.sequence_kl(batch)
        rewards = task - kl_coef * kl
        per_completion = group_advantages(rewards, k, config.advantage)
        mask = batch.response_mask
        advantages = torch.where(mask, per_completion[:, None].expand_as(mask), 0.0)

        metrics = self.optimise(index, batch, advantages, None, should_stop)
        metrics.update(self.rollout_metrics(batch, scores, task, kl, kl_coef))
        spread = rewards.view(-1, k).std(dim=-1, unbiased=False).mean()
        metrics["reward/group_std"] = float(spread)
        return metrics
