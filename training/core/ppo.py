"""RLHF with PPO against a trained reward model (Ziegler et al. 2019; InstructGPT).

:func:`run_ppo` is the runner for ``kind="ppo"``. TRL dropped its PPO trainer in 1.13, so
the loop is written here on top of the pure pieces in :mod:`training.core.losses`. What
PPO shares with GRPO/RLOO (:mod:`training.core.grpo`): sampling and scoring rollouts,
reward normalisation, the KL penalty and its controller, checkpoints and the loop, lives
in :mod:`training.core.rl`; this module adds the value head, GAE and the PPO update.

One rollout (``max_steps`` counts these):

1. Take the next ``rollout_batch_prompts`` prompts of a shuffled pass over the prompts
   (each epoch is reshuffled from ``seed``; a rollout may straddle two epochs).
2. Sample ``rollout_k`` completions of each from the *current* policy (pure sampling at
   ``temperature``: no top-k, no top-p) through a
   :class:`~training.core.rollouts.RolloutSampler`. Prompts are
   encoded exactly as the generation backends encode them, and a completion ends at EOS,
   which counts as one of its tokens, so even an empty completion has one token to carry
   its reward.
3. Score each ``(prompt, completion text)`` with the reward model
   (:class:`~training.core.scoring.RewardScorer`, which reads the text as the reward run
   trained on it), then normalise the score by the reward run's mean and spread on its
   reference answers (``normalize_rewards``, on by default), clip it (``reward_clip``)
   and charge ``length_penalty`` per token.
4. With gradients off: per-token log-probabilities of the policy and of the frozen
   reference, the policy's entropy, and the value head's values. Log-probabilities come
   from ``logits / temperature``, the distribution the tokens were actually sampled from.
5. Per-token rewards ``-beta * KL_t`` plus that task reward on the last token
   (:func:`~training.core.losses.shaped_rewards`), optionally whitened
   (``whiten_rewards``), then GAE advantages and returns (``gamma``, ``lam``); the
   advantages are whitened over the rollout.
6. ``ppo_epochs`` passes over the rollout in shuffled minibatches of ``minibatch_size``
   completions; each minibatch is one AdamW step of the clipped policy loss plus
   ``vf_coef`` times the clipped value loss, accumulated over micro-batches of
   ``batch_size`` completions and clipped to ``max_grad_norm``. ``gradient_accumulation_steps``
   is not used: ``minibatch_size / batch_size`` already sets the accumulation.
7. With ``adaptive_kl``, beta moves toward ``kl_target`` (Ziegler et al. 2019, Section 2.2).
8. With ``rollout_backend="vllm"``, the updated weights are pushed into the engine.

Design choices:

- **Value head on the policy's trunk.** The value function is a ``Linear(hidden, 1)`` on
  the policy's last hidden state, as TRL's ``AutoModelForCausalLMWithValueHead`` did.
  InstructGPT instead initialised a separate value model from the reward model; that is a
  second full network in memory and a second forward pass per micro-batch, which on the
  small models this app trains costs more than it buys. The price of sharing is that the
  value loss also moves the policy's weights (kept small by ``vf_coef``). The head starts
  at zero, so the first advantages are plain returns rather than noise from a random head.
  It lives in every checkpoint (``value_head.pt``) but not in ``final/``.
- **One model with LoRA.** The reference is a frozen copy of the base model; with
  ``use_lora`` it is the policy itself under peft's ``disable_adapter()``, so only one
  model sits in memory. The reward model is loaded once beside it.
- **No dropout.** The policy stays in eval mode throughout (gradients still flow): with
  dropout, the log-probabilities of the update would not be those the tokens were sampled
  with, and the PPO ratio would not start at 1 (TRL's PPO disabled dropout too).
- **Rollouts behind a seam.** Sampling goes through the
  :class:`~training.core.rollouts.RolloutSampler` protocol (:mod:`training.core.rollouts`):
  token ids in, token ids out, with the trainer recomputing every log-probability itself.
  ``rollout_backend`` picks ``model.generate`` on the in-memory policy ("transformers")
  or an in-process vLLM engine ("vllm"), which gets the policy's weights (LoRA merged)
  after every rollout's updates, and those of the checkpoint when a run resumes. The
  engine is closed when the run ends, however it ends.
- **Reproducible by construction.** All randomness of rollout ``r`` (sampling, minibatch
  order) is derived from ``(seed, r)``, the prompt order of each epoch from
  ``(seed, epoch)`` and the LoRA initialisation from ``seed``, so a resumed run follows
  the same path as an uninterrupted one, to the last digit on the same machine.
  Checkpoints also keep the global RNG states. With vLLM this holds as far as the
  engine's sampling is deterministic (see :mod:`training.core.rollouts`): on a CPU it
  is; on a GPU vLLM does not promise it.
- **Stopping.** ``reporter.should_stop()`` is asked before each rollout and after each PPO
  epoch; a stop in the middle of a rollout skips its remaining epochs (the rollout counts
  as done). Either way a checkpoint is saved and the run returns ``"cancelled"``.
- **Several processes.** With ``num_processes > 1`` each rank samples and scores its share
  of the rollout's prompts; GAE, the whitening and the metrics are computed on the gathered
  rollout, so over all ranks' completions (:mod:`training.core.rl.distributed`).
- **Lengths.** A completion that reaches ``max_new_tokens`` without EOS is scored as it
  is (the scorer appends the EOS the reward model was trained with). Prompts keep their
  last ``max_length - max_new_tokens`` tokens.

Checkpoints (``output_dir/checkpoints/checkpoint-<rollout>/``): ``policy/`` (the adapter
with LoRA, else the full model), ``value_head.pt``, ``optimizer.pt``, ``rng_state.pt`` and
``ppo_state.json`` (rollouts done, beta, prompts consumed), written to a temporary folder
and renamed, so a crash never leaves half a checkpoint.

Reported every ``logging_steps`` rollouts (step = rollouts done): ``score`` (raw),
``score/task`` (normalised, clipped, length-penalised), ``kl`` (summed per completion, with
``kl_estimator``), ``kl_coef`` (the beta this rollout used), ``reward``
(``score/task - kl_coef * kl``), ``entropy``, ``response_length``, ``loss``,
``loss/policy``, ``loss/value``, ``policy/clipfrac``, ``policy/approx_kl``,
``policy/ratio``, ``value/clipfrac`` (the PPO ones averaged over the rollout's optimizer
steps). At the end, ``eval/score``, ``eval/kl`` and ``eval/response_length`` on the
held-out prompts.

Nothing here imports Django; torch, transformers, peft and vLLM are imported when a run
starts.
"""

from __future__ import annotations

from collections.abc import Callable

from generation.backends.base import PromptInput
from training.core.configs import PPOConfig
from training.core.data import PromptData
from training.core.reporting import ProgressReporter
from training.core.rl import RLTrainer, run_rl
from training.core.runners import RunResult, RunSpec

__all__ = ["run_ppo"]


def run_ppo(spec: RunSpec, data: PromptData, reporter: ProgressReporter) -> RunResult:
    """Train ``spec.model_path`` with PPO against ``spec.reward_model_path`` on ``data``.

    See the module docstring for the algorithm and what is reported and saved, and
    :func:`training.core.rl.run_rl` for what is refused with a :class:`TrainingError`.
    """
    return run_rl(
        spec,
        data,
        reporter,
        config_class=PPOConfig,
        trainer_class=_PPOTrainer,
        value_head=True,
    )


class _PPOTrainer(RLTrainer):
    """PPO's update on the shared rollouts: GAE on a value head, clipped policy and value."""

    config: PPOConfig

    def rollout(
        self,
        index: int,
        prompts: list[PromptInput],
        prompt_ids: list[list[int]],
        *,
        kl_coef: float,
        should_stop: Callable[[], bool],
    ) -> dict[str, float]:
        """Sample, score and optimise on rollout ``index`` (0-based); returns its metrics.

        ``should_stop`` is asked after each PPO epoch: a stop ends the rollout early.
        """
        from training.core.losses import gae, masked_whiten, shaped_rewards

        config = self.config
        # The whole rollout's, when several processes each sampled their share of it.
        batch, scores = self.experience(index, prompts, prompt_ids)
        assert batch.values is not None
        task = self.task_rewards(scores, batch)
        mask = batch.response_mask
        kl = self.sequence_kl(batch)
        rewards = shaped_rewards(
            task, batch.logprobs, batch.ref_logprobs, mask, kl_coef, config.kl_estimator
        )
        if config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, batch.values, mask, config.gamma, config.lam)
        advantages = masked_whiten(advantages, mask)

        metrics = self.optimise(index, batch, advantages, returns, should_stop)
        metrics.update(self.rollout_metrics(batch, scores, task, kl, kl_coef))
        return metrics
