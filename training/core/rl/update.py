"""The update of an RL run: PPO's clipped surrogate over a rollout's minibatches.

:class:`RLTrainer` is :class:`~training.core.rl.experience.RLExperience` plus the
optimisation every kind shares (``ppo_epochs`` passes in shuffled minibatches,
micro-batch gradient accumulation, clipping, the optimizer step); a kind subclasses it
and implements :meth:`RLTrainer.rollout`, which turns one sampled, scored rollout into
advantages and calls :meth:`RLTrainer.optimise`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from generation.backends.base import PromptInput
from training.core.configs import PPOConfig
from training.core.rl.experience import RLExperience, Rollout, forward_response, trim_padding
from training.core.rl.seeds import mix_seed

if TYPE_CHECKING:
    import torch

__all__ = ["RLTrainer"]


class RLTrainer(RLExperience):
    """Rollouts, rewards, evaluation and the update for one run's loaded policy and reward
    model.

    A kind subclasses it and implements :meth:`rollout`.
    """

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
        ``kl`` among them (the controller adapts beta to it): the whole rollout's.

        ``prompts`` and ``prompt_ids`` are this process's share of the rollout's prompts (all
        of them in one process); :meth:`experience` gathers the other processes' shares.

        ``should_stop`` is asked after each epoch over the rollout: a stop ends it early.
        """
        raise NotImplementedError

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

        In several processes each rank backpropagates its share of each minibatch's
        micro-batches and the gradients are summed before the step
        (:mod:`training.core.rl.distributed`); the metrics are those of all the ranks.
        """
        import torch

        from training.core.rl import distributed

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
        if distributed.world_size() > 1:
            # Each rank summed the metrics of its micro-batches, weighted by their share of
            # their minibatch: added up over the ranks, they are the one-process sums.
            totals: dict[str, float] = {}
            for share in distributed.all_gather(sums):
                for name, value in share.items():
                    totals[name] = totals.get(name, 0.0) + value
            sums = totals
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
        metrics: dict[str, float] = {}
        # Layers recompute their activations only in train mode (dropout is off then).
        self.policy.model.train(self.config.gradient_checkpointing)
        try:
            self._accumulate(batch, advantages, returns, minibatch, metrics)
        finally:
            self.policy.model.eval()
        self.optimizer_step()
        return metrics

    def _accumulate(
        self,
        batch: Rollout,
        advantages: torch.Tensor,
        returns: torch.Tensor | None,
        minibatch: torch.Tensor,
        metrics: dict[str, float],
    ) -> None:
        """Forward and backward ``minibatch`` micro-batch by micro-batch, summing the
        gradients and adding each micro-batch's share of the metrics to ``metrics``.

        In several processes rank ``r`` of ``W`` takes the micro-batches ``r, r + W, ...``.
        """
        from training.core.losses import ppo_policy_loss, ppo_value_loss, token_logps
        from training.core.rl import distributed

        config, device = self.config, self.device
        rank, ranks = distributed.rank(), distributed.world_size()
        starts = range(0, len(minibatch), config.batch_size)
        for number, start in enumerate(starts):
            if number % ranks != rank:
                continue
            rows = minibatch[start : start + config.batch_size]
            ids, attn, width = trim_padding(
                batch.input_ids[rows], batch.attention_mask[rows], batch.response_mask[rows]
            )
            mask = batch.response_mask[rows, :width].to(device)
            with self.autocast():
                logits, values = forward_response(
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

    def optimizer_step(self) -> None:
        """Sum the gradients over the ranks (in several processes), clip them to
        ``max_grad_norm``, step, and zero them."""
        import torch

        from training.core.rl import distributed

        optimizer = self.policy.optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        distributed.all_reduce_gradients(params)
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
