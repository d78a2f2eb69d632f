"""The experience of an RL run: sampling rollouts, scoring them, and their log-probs.

:class:`RLExperience` samples ``rollout_k`` completions per prompt through a
:class:`~training.core.rollouts.RolloutSampler`, has the reward model score them, turns
the scores into task rewards and computes, with gradients off, the per-token
log-probabilities of the policy and of the reference, the value head's values and the
policy's entropy (a :class:`Rollout`). :class:`~training.core.rl.update.RLTrainer` adds
the update on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from generation.backends.base import BackendError, PromptInput
from generation.backends.prompting import encode_prompt
from training.core.configs import RLConfig
from training.core.rl.seeds import mix_seed
from training.core.rollouts import RolloutSampler, TransformersRolloutSampler
from training.core.runners import RunSpec, TrainingError

if TYPE_CHECKING:
    import torch

    from training.core.rl.checkpoint import Policy

__all__ = [
    "RLExperience",
    "Rollout",
    "decode_completions",
    "eos_token_ids",
    "forward_response",
    "merge_rollouts",
    "pack_rollout",
    "trim_padding",
]


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


def pack_rollout(
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


def merge_rollouts(
    parts: Sequence[tuple[Rollout, torch.Tensor]], pad_id: int
) -> tuple[Rollout, torch.Tensor]:
    """The processes' rollouts and scores as one, in order: what one process would have
    built from all their completions (:func:`pack_rollout`'s layout, prompts left-padded to
    the longest prompt, completions right-padded to the longest completion)."""
    import torch

    if len(parts) == 1:
        return parts[0]
    batches = [batch for batch, _ in parts]
    width = max(b.input_ids.shape[1] - b.response_mask.shape[1] for b in batches)
    length = max(b.response_mask.shape[1] for b in batches)

    def widen(t: torch.Tensor, prompt: int, fill: int | float | bool) -> torch.Tensor:
        """``t`` ``[n, prompt + r]`` placed in ``[n, width + length]``: the prompt part
        left-padded, the completion part right-padded."""
        out = torch.full((t.shape[0], width + length), fill, dtype=t.dtype)
        out[:, width - prompt : width] = t[:, :prompt]
        out[:, width : width + t.shape[1] - prompt] = t[:, prompt:]
        return out

    def right(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((t.shape[0], length), dtype=t.dtype)
        out[:, : t.shape[1]] = t
        return out

    input_ids, attention_mask = [], []
    for b in batches:
        prompt = b.input_ids.shape[1] - b.response_mask.shape[1]
        input_ids.append(widen(b.input_ids, prompt, pad_id))
        attention_mask.append(widen(b.attention_mask, prompt, 0))
    ids, attn = torch.cat(input_ids), torch.cat(attention_mask)
    tokens = [b.response_mask.sum() for b in batches]
    entropy = sum(b.entropy * t for b, t in zip(batches, tokens, strict=True)) / max(
        int(sum(tokens)), 1
    )
    values = None
    if batches[0].values is not None:
        values = torch.cat([right(b.values) for b in batches if b.values is not None])
    merged = Rollout(
        ids,
        attn,
        ids[:, width:],
        attn[:, width:].bool(),
        torch.cat([right(b.logprobs) for b in batches]),
        torch.cat([right(b.ref_logprobs) for b in batches]),
        values,
        torch.as_tensor(entropy, dtype=torch.float32),
    )
    return merged, torch.cat([scores for _, scores in parts])


def trim_padding(
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


def forward_response(
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


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos])]


def decode_completions(
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


class RLExperience:
    """Rollouts, rewards and evaluation for one run's loaded policy and reward model.

    :class:`~training.core.rl.update.RLTrainer` adds the update; a kind subclasses that.
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
        self.eos_ids = eos_token_ids(policy.model, self.tokenizer)
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
                batch_size=config.rollout_sample_batch,
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
        self,
        prompts: list[PromptInput],
        prompt_ids: list[list[int]],
        *,
        n: int,
        seed: int,
        first_row: int = 0,
    ) -> tuple[Rollout, torch.Tensor]:
        """``n`` completions per prompt from the current policy, and their scores ``[N]``.

        ``first_row``: where these completions start in the whole rollout, when this
        process samples only its share of it (see :meth:`RolloutSampler.sample`).
        """
        import torch

        responses = self.sampler.sample(
            prompt_ids,
            n=n,
            max_new_tokens=self.max_new_tokens,
            temperature=self.config.temperature,
            seed=seed,
            first_row=first_row,
        )
        texts = decode_completions(self.tokenizer, responses, self.eos_ids)
        items = [(prompts[i // n], text) for i, text in enumerate(texts)]
        scores = torch.tensor(
            self.scorer.score(items, batch_size=self.config.batch_size), dtype=torch.float32
        )
        rows = [ids for ids in prompt_ids for _ in range(n)]
        return self._score_tokens(rows, responses), scores

    def experience(
        self, index: int, prompts: list[PromptInput], prompt_ids: list[list[int]]
    ) -> tuple[Rollout, torch.Tensor]:
        """Rollout ``index``'s completions of this process's ``prompts`` (all of the rollout's
        in one process), sampled, scored and scored by the policy and reference, then the
        whole rollout's: every process's, merged in rank order
        (:mod:`training.core.rl.distributed`)."""
        from training.core.rl import distributed

        k = self.config.rollout_k
        first_row = distributed.rank() * len(prompts) * k
        batch, scores = self.sample_and_score(
            prompts,
            prompt_ids,
            n=k,
            seed=mix_seed(self.config.seed, 1, index),
            first_row=first_row,
        )
        return merge_rollouts(distributed.all_gather((batch, scores)), self.pad_id)

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

    def _score_tokens(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> Rollout:
        """Policy and reference log-probs, values and entropy of sampled completions."""
        import torch

        from training.core.losses import entropy_from_logits, token_logps

        config, device, model = self.config, self.device, self.policy.model
        input_ids, attention_mask, response_ids, response_mask = pack_rollout(
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
                ids, attn, width = trim_padding(
                    input_ids[rows], attention_mask[rows], response_mask[rows]
                )
                ids, attn = ids.to(device), attn.to(device)
                mask = response_mask[rows, :width].to(device)
                labels = response_ids[rows, :width].to(device)
                with self.autocast():
                    logits, micro_values = forward_response(
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
            logits, _ = forward_response(
                self.policy.ref_model, None, input_ids, attention_mask, width, temperature
            )
            return logits
        with self.policy.model.disable_adapter():  # the base model under the LoRA policy
            logits, _ = forward_response(
                self.policy.model, None, input_ids, attention_mask, width, temperature
            )
        return logits

    def evaluate(self, prompts: list[PromptInput]) -> dict[str, float]:
        """``eval/score``, ``eval/kl`` and ``eval/response_length``: means over one sampled
        completion per prompt.

        In several processes the chunks of ``rollout_batch_prompts`` prompts are dealt
        round-robin to the ranks, each sampled as one process samples it, and the means
        taken over all of them on every rank.
        """
        from training.core.rl import distributed

        scores: list[float] = []
        kls: list[float] = []
        lengths: list[float] = []
        chunk = self.config.rollout_batch_prompts
        rank, ranks = distributed.rank(), distributed.world_size()
        for number, start in enumerate(range(0, len(prompts), chunk)):
            if number % ranks != rank:
                continue
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
        if ranks > 1:
            shares = distributed.all_gather((scores, kls, lengths))
            scores, kls, lengths = ([x for share in shares for x in share[i]] for i in range(3))
        return {
            "eval/score": sum(scores) / len(scores),
            "eval/kl": sum(kls) / len(kls),
            "eval/response_length": sum(lengths) / len(lengths),
        }
