"""The backend interface shared by vLLM, transformers and OpenAI-compatible servers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol

Message = dict[str, str]
# A prompt is a plain string or a conversation: a list of {"role", "content"} messages.
PromptInput = str | list[Message]
BackendKind = Literal["transformers", "vllm", "openai"]


class BackendError(RuntimeError):
    """A backend could not load its model or produce samples; the message says why."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``seed`` makes a call reproducible for a given backend and batch."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = 0
    stop: tuple[str, ...] = ()
    # openai: ask for this many likeliest alternatives of each reply token (0: none).
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


@dataclass(frozen=True)
class Sample:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # "stop" (end of sequence or a stop string) or "length" (hit max_new_tokens).
    finish_reason: str = "stop"
    # openai, when asked (``SamplingParams.top_logprobs``) and the server answers them: for
    # each reply token, its likeliest alternatives (token text -> log-prob).
    token_logprobs: tuple[dict[str, float], ...] | None = None


@dataclass(frozen=True)
class BackendSpec:
    """Everything a worker needs to build a backend; mirrors a ``PolicyModel`` row."""

    kind: BackendKind
    source: str = ""  # local folder or hub id (transformers, vllm)
    use_chat_template: bool = False
    server_url: str = ""  # openai: base URL ending in /v1
    extra_server_urls: tuple[str, ...] = ()  # openai: more servers of the same model
    server_model: str = ""  # openai: the served model's name
    tensor_parallel_size: int = 1  # vllm: GPUs the engine splits the model over
    options: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    @property
    def server_urls(self) -> tuple[str, ...]:
        return (self.server_url, *self.extra_server_urls) if self.server_url else ()


class GenerationBackend(Protocol):
    spec: BackendSpec

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        """Return ``n`` samples for each prompt, in prompt order."""
        ...

    def close(self) -> None:
        """Free the model (GPU memory, HTTP pools)."""
        ...


_cache: dict[BackendSpec, GenerationBackend] = {}
_cache_lock = threading.Lock()


def backend_for(spec: BackendSpec, *, reuse: bool = True) -> GenerationBackend:
    """Build the backend for ``spec``, reusing the one this process already loaded.

    Loading a model is the slow part (vLLM: tens of seconds), so a worker keeps the last
    backend per spec and reuses it across jobs. One model at a time is kept in memory.
    """
    with _cache_lock:
        if reuse and spec in _cache:
            return _cache[spec]
        for old in list(_cache.values()):
            old.close()
        _cache.clear()
        backend = _create(spec)
        if reuse:
            _cache[spec] = backend
        return backend


def _create(spec: BackendSpec) -> GenerationBackend:
    if spec.kind == "transformers":
        from generation.backends.transformers import TransformersBackend

        return TransformersBackend(spec)
    if spec.kind == "vllm":
        from generation.backends.vllm import VLLMBackend

        return VLLMBackend(spec)
    if spec.kind == "openai":
        from generation.backends.openai import OpenAIBackend

        return OpenAIBackend(spec)
    raise BackendError(f"unknown backend {spec.kind!r}")
