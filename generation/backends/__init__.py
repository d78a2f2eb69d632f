"""Django-free generation backends behind one interface.

``backend_for(spec).generate(prompts, n, params)`` returns, for each prompt, ``n``
:class:`Sample` objects. Heavy libraries (torch, vllm, httpx) are imported only
when a backend of that kind is created.
"""

from __future__ import annotations

from generation.backends.base import (
    BackendError,
    BackendSpec,
    GenerationBackend,
    PromptInput,
    Sample,
    SamplingParams,
    backend_for,
)

__all__ = [
    "BackendError",
    "BackendSpec",
    "GenerationBackend",
    "PromptInput",
    "Sample",
    "SamplingParams",
    "backend_for",
]
