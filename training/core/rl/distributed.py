"""An RL run in several processes: the ranks' share of the work and the collectives.

A run with ``num_processes > 1`` is started by :func:`~training.core.launch.run_launched`
(torchrun); every rank runs :func:`~training.core.rl.run_rl` and joins the process group
here (gloo on a CPU, NCCL on GPUs, one GPU per rank). The work is split so that the
numbers are those of the same run in one process, up to float rounding:

- **Rollouts.** Rank ``r`` of ``W`` samples, scores and computes the experience (log-probs
  of the policy and reference, values, entropy) of its slice of the rollout's prompts,
  ``rollout_batch_prompts / W`` whole prompts with all their ``rollout_k`` samples.
  :func:`gather` then gives every rank the whole rollout: its tensors are small beside the
  models, and with them each rank computes the advantages (PPO's whitening, GRPO's groups)
  and the rollout's metrics over the global batch, exactly as one process does.
- **Update.** Each minibatch is the one a single process would take; its micro-batches
  (``batch_size`` completions) are dealt round-robin to the ranks, each rank backpropagates
  its own, and :func:`all_reduce_gradients` sums the gradients before the (identical)
  clipping and optimizer step on every rank, so the weights stay equal everywhere. Each
  micro-batch's loss is already weighted by its share of the minibatch, so the sum is the
  one-process gradient: no re-normalisation by the number of ranks.
- **Stopping and checkpoints.** The stop flag is :class:`~training.core.launch.RankReporter`'s
  all-reduced one, asked at the same points on every rank; rank 0 alone writes checkpoints
  and ``final/``, the others wait at a barrier.

This is torch.distributed's own collectives and nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "all_gather",
    "all_reduce_gradients",
    "barrier",
    "join",
    "leave",
    "rank",
    "world_size",
]

T = TypeVar("T")
# Gradients are summed in flat buffers of at most this many elements (float32: 256 MiB).
_BUCKET = 64 * 1024 * 1024


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes of this run: 1 unless the process group is up."""
    import torch.distributed as dist

    return dist.get_world_size() if _initialized() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if _initialized() else 0


def join(device: str) -> tuple[str, bool]:
    """Join torchrun's process group when it started this process with ``WORLD_SIZE > 1``.

    Returns ``(device, joined)``: on CUDA each rank takes the GPU of its ``LOCAL_RANK``
    (``cuda:<local rank>``) and NCCL, elsewhere gloo and ``device`` as it is; ``joined`` is
    whether this call started the group (then :func:`leave` ends it).
    """
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _initialized():
        return device, False
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device(device))
    else:
        dist.init_process_group("gloo")
    return device, True


def leave() -> None:
    import torch.distributed as dist

    if _initialized():
        dist.destroy_process_group()


def barrier() -> None:
    import torch.distributed as dist

    if world_size() > 1:
        dist.barrier()


def all_gather(value: T) -> list[T]:
    """``value`` of every rank, in rank order (``[value]`` in one process).

    Pickled (``all_gather_object``): meant for a rollout's CPU tensors and metric dicts, a
    few MiB at most, not for weights.
    """
    import torch.distributed as dist

    if world_size() == 1:
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def all_reduce_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its sum over the ranks.

    A parameter without a gradient on a rank (it had no micro-batch this step) takes part
    with zeros; one without a gradient on any rank keeps none, as in one process (AdamW
    skips it rather than stepping on a zero gradient). Every rank ends with the same
    gradients. Summed in flat buffers, a few collectives per step rather than one per tensor.
    """
    import torch
    import torch.distributed as dist

    if world_size() == 1:
        return
    trainable = [p for p in params if p.requires_grad]
    flags = [p.grad is not None for p in trainable]
    anywhere = torch.tensor(flags, dtype=torch.int32, device=_collective_device())
    dist.all_reduce(anywhere, op=dist.ReduceOp.MAX)
    trainable = [p for p, has in zip(trainable, anywhere.tolist(), strict=True) if has]
    for p in trainable:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for bucket in _buckets(trainable):
        grads = [p.grad for p in bucket if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def _collective_device() -> str:
    """Where a tensor for a collective must be: the rank's GPU under NCCL, else the CPU."""
    import torch
    import torch.distributed as dist

    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


def _buckets(params: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """``params`` in runs of at most ``_BUCKET`` elements whose gradients share a dtype and
    device (one flat buffer each)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        if bucket and (size + p.numel() > _BUCKET or not _same(bucket[0], p)):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.numel()
    if bucket:
        yield bucket


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the gradients of ``a`` and ``b`` can share a flat buffer (dtype, device)."""
    assert a.grad is not None and b.grad is not None
    return a.grad.dtype == b.grad.dtype and a.grad.device == b.grad.device
