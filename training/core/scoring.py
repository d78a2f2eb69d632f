"""Score completions with a trained reward model.

A reward model is the ``final/`` folder of a reward run: a ``save_pretrained``
``AutoModelForSequenceClassification`` with one label, and its tokenizer. A completion is
scored exactly as it was trained on (:mod:`training.core.preference`): the input is
:func:`training.core.data.encode_completion` (the prompt's ids as generation encodes them,
the completion's ids, EOS) and the score is the head's output at the last of those tokens
(:func:`training.core.hf.reward_scores`).

Nothing here imports Django; torch and transformers are imported when a scorer is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generation.backends.base import PromptInput
from training.core.data import encode_completion

__all__ = ["RewardScorer", "RewardStats", "reward_stats_of", "score_completions"]


@dataclass(frozen=True)
class RewardStats:
    """A reward model's scores on its reference answers: what PPO and GRPO normalise by.

    ``mean`` and ``std`` (the population standard deviation, floored so that it is > 0)
    of ``count`` scores, and the highest of them (``max``: None in stats stored before it
    was kept); ``reference`` says which answers ("demonstrations" or "chosen").
    """

    mean: float
    std: float
    count: int
    reference: str = ""
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mean": self.mean,
            "std": self.std,
            "count": self.count,
            "reference": self.reference,
        }
        if self.max is not None:
            data["max"] = self.max
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardStats:
        top = data.get("max")
        return cls(
            mean=float(data["mean"]),
            std=float(data["std"]),
            count=int(data["count"]),
            reference=str(data.get("reference", "")),
            max=float(top) if top is not None else None,
        )


# A reward model that gives every reference answer the same score has no spread to divide
# by; one of these units is then the unit.
_MIN_STD = 1e-6


def reward_stats_of(scores: Sequence[float], *, reference: str = "") -> RewardStats:
    """Mean, population standard deviation and maximum of ``scores`` (at least one, all
    finite)."""
    if not scores:
        raise ValueError("no scores to take the mean and spread of")
    if not all(math.isfinite(s) for s in scores):
        raise ValueError("a score is not finite")
    mean = math.fsum(scores) / len(scores)
    var = math.fsum((s - mean) ** 2 for s in scores) / len(scores)
    return RewardStats(
        mean=mean,
        std=max(math.sqrt(var), _MIN_STD),
        count=len(scores),
        reference=reference,
        max=max(scores),
    )


class RewardScorer:
    """A reward model loaded once, in eval mode, to score many ``(prompt, completion)`` items.

    ``use_chat_template`` must match how the reward model was trained (the run's setting).
    Sequences longer than ``max_length`` tokens are truncated as in training.
    """

    def __init__(
        self,
        model_path: str,
        *,
        device: str | None = None,
        max_length: int = 512,
        use_chat_template: bool = False,
    ) -> None:
        import torch

        from training.core.hf import load_reward_model, load_tokenizer, resolve_device, use_bf16

        self.device = resolve_device(device)
        self.max_length = max_length
        self.use_chat_template = use_chat_template
        self.tokenizer = load_tokenizer(model_path)
        dtype = torch.bfloat16 if use_bf16(self.device) else torch.float32
        self.model: Any = load_reward_model(model_path, self.tokenizer, dtype=dtype)
        self.model.to(self.device)
        self.model.eval()

    def encode(self, prompt: PromptInput, completion: str) -> list[int]:
        """The token ids the reward model reads for one item."""
        ids, _ = encode_completion(
            self.tokenizer,
            prompt,
            completion,
            use_chat_template=self.use_chat_template,
            max_length=self.max_length,
            conversation_as_text=True,
        )
        return ids

    def score(
        self, items: Sequence[tuple[PromptInput, str]], *, batch_size: int = 16
    ) -> list[float]:
        """One reward per ``(prompt, completion)``, in order."""
        return self.score_ids([self.encode(p, c) for p, c in items], batch_size=batch_size)

    def score_ids(self, sequences: Sequence[Sequence[int]], *, batch_size: int = 16) -> list[float]:
        """One reward per already-encoded sequence (prompt + completion + EOS ids), in order.

        Sequences are batched by similar length (sorted, then restored) so little padding is
        computed.
        """
        import torch

        from training.core.hf import pad_right, reward_scores

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.model is None:
            raise RuntimeError("the scorer is closed")
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        scores = [0.0] * len(sequences)
        pad_id = int(self.tokenizer.pad_token_id)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                ids, mask = pad_right(
                    [list(sequences[i]) for i in batch], pad_id, device=self.device
                )
                values = reward_scores(self.model, ids, mask).tolist()
                for i, value in zip(batch, values, strict=True):
                    scores[i] = float(value)
        return scores

    def close(self) -> None:
        """Free the model (and the GPU memory it holds)."""
        self.model = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def score_completions(
    model_path: str,
    items: Sequence[tuple[PromptInput, str]],
    *,
    use_chat_template: bool = False,
    max_length: int = 512,
    batch_size: int = 16,
    device: str | None = None,
) -> list[float]:
    """Load the reward model at ``model_path``, score ``items``, free it."""
    scorer = RewardScorer(
        model_path, device=device, max_length=max_length, use_chat_template=use_chat_template
    )
    try:
        return scorer.score(items, batch_size=batch_size)
    finally:
        scorer.close()
