"""Per-token log-probabilities of a causal LM without its ``[N, T, V]`` float32 logits.

DPO needs ``log p(y_t | x, y_<t)`` for every completion token and SFT's loss is their mean.
Computed the plain way (``model(...).logits`` then a log-softmax), they pass through a
float32 tensor of ``N x T x V``: 16 sequences of 2,048 tokens over a 151,936-token
vocabulary (Qwen) are 20 GB, more than a 7B model's bf16 weights, and the log-softmax's
output and its gradient add as much again.

:func:`causal_lm_logps` runs the model up to its last hidden state (its LM head on one
position only, ``logits_to_keep=1``), gathers the hidden states of the scored tokens into
``[M, H]`` and applies the head and the log-softmax to ``chunk`` tokens at a time
(:func:`hidden_label_logps`). Each chunk runs under activation checkpointing: the forward
keeps only the chunk's hidden states and its ``[chunk]`` log-probs, the backward
recomputes one chunk's logits at a time. The head's peak goes from ``N x T x V`` floats
(about three times that with the gradient) to a few ``chunk x V``, with ``chunk`` sized so
that one chunk's float32 logits take :data:`LOGITS_CHUNK_BYTES`. The values and
gradients are those of the plain computation up to float rounding (tests compare them to
1e-6); only the order of the head's gradient sums changes.

Guards, so a model is never scored wrongly:

- A model whose logits are not its head applied to its last hidden state (Gemma's final
  soft-capping, Cohere's and Granite's logit scaling: :data:`LOGIT_TRANSFORMS`), one that
  does not take ``logits_to_keep``, or a head whose weight is sharded (FSDP, DeepSpeed
  ZeRO-3: the weight is only whole inside the model's forward) is scored the plain way.
- Otherwise each call checks that the head on the last position's hidden state gives the
  model's own logits there; if not (an architecture this module does not know), the
  batch is scored the plain way, with a warning.

The model is always called through its own ``forward`` (a DDP or peft wrapper included),
so data-parallel gradient hooks fire as they would for the plain computation.

Nothing here imports Django; torch is imported when a function runs.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["IGNORE_INDEX", "LOGITS_CHUNK_BYTES", "causal_lm_logps", "hidden_label_logps"]

IGNORE_INDEX = -100
"""A label that is not scored (the ``transformers`` convention)."""

LOGITS_CHUNK_BYTES = 64 * 2**20
"""The float32 logits of one chunk of scored tokens take at most this much (64 MiB: 110
tokens over a 151,936-token vocabulary), unless one token's take more."""

LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "output_multiplier",
    "lm_head_multiplier",
)
"""Config fields of models whose logits are their head's output transformed (scaled or
soft-capped); such a model is scored through its own logits."""


def hidden_label_logps(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    *,
    chunk: int,
) -> torch.Tensor:
    """``log_softmax(head(hidden))[i, labels[i]]`` for each row, ``chunk`` rows at a time.

    Shapes: ``hidden [M, H]``, ``labels [M]`` (valid ids) -> ``[M]`` float32. The softmax
    runs in float32 whatever the head's dtype. With gradients on, each chunk is
    checkpointed: only its ``[chunk, V]`` logits exist at any time, in the backward too.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    def chunk_logps(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = head(h).float()
        picked = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1)

    chunk = max(1, int(chunk))
    parts = []
    for start in range(0, hidden.shape[0], chunk):
        h, y = hidden[start : start + chunk], labels[start : start + chunk]
        if torch.is_grad_enabled():
            parts.append(checkpoint(chunk_logps, h, y, use_reentrant=False))
        else:
            parts.append(chunk_logps(h, y))
    if not parts:
        return hidden.new_zeros((0,), dtype=torch.float32)
    return torch.cat(parts)


def causal_lm_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    chunk_bytes: int = LOGITS_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's summed log-probability of its labels, and how many labels it has.

    Shapes: ``input_ids``, ``attention_mask``, ``labels`` ``[N, T]`` ->
    ``(sum_logps [N] float32, counts [N] long)``. As for a ``transformers`` causal LM loss,
    ``labels[:, t]`` is scored by the output at ``t - 1`` (position 0 is never scored) and
    ``-100`` is not scored. A row without labels sums to 0. See the module docstring for
    how the ``[N, T, V]`` logits are avoided and when they are not.
    """
    import torch

    targets = labels[:, 1:]
    scored = targets != IGNORE_INDEX
    counts = scored.sum(dim=-1)
    hidden, head = _final_hidden_and_head(model, input_ids, attention_mask)
    if hidden is None:
        return _plain_logps(model, input_ids, attention_mask, targets, scored), counts
    rows, columns = scored.nonzero(as_tuple=True)
    vocab = int(head.weight.shape[0])
    chunk = max(1, chunk_bytes // (4 * vocab))
    # The hidden state at t - 1 predicts the token at t.
    logps = hidden_label_logps(hidden[rows, columns], head, targets[rows, columns], chunk=chunk)
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=logps.device)
    return sums.index_add(0, rows.to(logps.device), logps), counts


def _plain_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    targets: torch.Tensor,
    scored: torch.Tensor,
) -> torch.Tensor:
    """The plain computation: the model's full logits, then a log-softmax."""
    from training.core.losses import token_logps

    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    return token_logps(logits[:, :-1], targets, scored).sum(dim=-1)


def _causal_lm(model: Any) -> Any:
    """The ``transformers`` model inside DDP (``.module``) and peft wrappers."""
    from training.core.hf import unwrap_model

    return unwrap_model(getattr(model, "module", model))


def _chunkable_head(inner: Any) -> Any:
    """The LM head, when the model's logits are that head on the last hidden state and its
    weight is whole here; else None."""
    import torch

    config: Any = getattr(inner, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, name, None) is not None for name in LOGIT_TRANSFORMS):
        return None
    if "logits_to_keep" not in inspect.signature(inner.forward).parameters:
        return None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    prefix = getattr(inner, "base_model_prefix", "")
    if weight is None or not prefix or not hasattr(inner, prefix):
        return None
    # FSDP2 shards into DTensors; FSDP1 and ZeRO-3 leave an empty or flat placeholder.
    if type(weight) not in (torch.Tensor, torch.nn.Parameter) or weight.dim() != 2:
        return None
    if weight.shape[1] != getattr(text_config, "hidden_size", weight.shape[1]):
        return None
    return head


def _final_hidden_and_head(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor | None, Any]:
    """``(last hidden state [N, T, H], head)`` from one forward that computes the logits of
    the last position only, or ``(None, None)`` when the model must be scored the plain way."""
    import torch

    inner = _causal_lm(model)
    head = _chunkable_head(inner)
    if head is None:
        return None, None
    captured: list[torch.Tensor] = []

    def capture(module: Any, args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    hook = getattr(inner, inner.base_model_prefix).register_forward_hook(capture)
    try:
        output = model(
            input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, use_cache=False
        )
    finally:
        hook.remove()
    if len(captured) != 1:
        return None, None
    hidden = captured[0]
    with torch.no_grad():
        own = output.logits[:, -1].float()
        ours = head(hidden[:, -1]).float()
    if own.shape != ours.shape or not torch.allclose(own, ours, rtol=1e-4, atol=1e-5):
        warnings.warn(
            f"{type(inner).__name__}'s logits are not its LM head on its last hidden state; "
            "scoring it through its full logits",
            RuntimeWarning,
            stacklevel=3,
        )
        return None, None
    return hidden, head
