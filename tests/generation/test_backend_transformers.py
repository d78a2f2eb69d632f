from __future__ import annotations

from pathlib import Path

import pytest

from generation.backends import BackendError, BackendSpec, SamplingParams, backend_for
from generation.backends.transformers import TransformersBackend, truncate_at_stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(tiny_model_path: Path) -> TransformersBackend:
    return TransformersBackend(BackendSpec(kind="transformers", source=str(tiny_model_path)))


def test_it_returns_k_samples_per_prompt(backend: TransformersBackend) -> None:
    prompts = ["Once upon a", [{"role": "user", "content": "Tell me a joke."}], "Hello"]
    result = backend.generate(prompts, 4, SamplingParams(max_new_tokens=6, seed=1))
    assert [len(group) for group in result] == [4, 4, 4]
    for group in result:
        for sample in group:
            assert isinstance(sample.text, str)
            assert 0 <= sample.completion_tokens <= 6
            assert sample.prompt_tokens and sample.prompt_tokens > 0
            assert sample.finish_reason in {"stop", "length"}
            if sample.finish_reason == "length":
                assert sample.completion_tokens == 6


def test_it_counts_conversation_tokens_through_the_chat_template(
    backend: TransformersBackend,
) -> None:
    plain, chat = backend.generate(
        ["Hi", [{"role": "user", "content": "Hi"}]], 1, SamplingParams(max_new_tokens=2, seed=0)
    )
    # "<|user|>\nHi<|eos|>\n<|assistant|>\n" is longer than "Hi".
    assert chat[0].prompt_tokens > plain[0].prompt_tokens


def test_it_is_reproducible_for_a_seed(backend: TransformersBackend) -> None:
    params = SamplingParams(max_new_tokens=8, seed=7)
    first = backend.generate(["Once upon a"], 3, params)
    again = backend.generate(["Once upon a"], 3, params)
    other = backend.generate(["Once upon a"], 3, SamplingParams(max_new_tokens=8, seed=8))
    assert [s.text for s in first[0]] == [s.text for s in again[0]]
    assert [s.text for s in first[0]] != [s.text for s in other[0]]


def test_it_gives_the_same_shape_whatever_the_batch_size(tiny_model_path: Path) -> None:
    one = TransformersBackend(
        BackendSpec(kind="transformers", source=str(tiny_model_path), options={"batch_size": 1})
    )
    result = one.generate(["a", "b", "c"], 2, SamplingParams(max_new_tokens=3, seed=0))
    assert [len(group) for group in result] == [2, 2, 2]


def test_it_samples_greedily_at_temperature_zero(backend: TransformersBackend) -> None:
    result = backend.generate(["Once upon a"], 3, SamplingParams(temperature=0, max_new_tokens=5))
    assert len({s.text for s in result[0]}) == 1


def test_it_truncates_at_the_earliest_stop_string() -> None:
    assert truncate_at_stop("abc###def\n\nHuman: x", ("\n\nHuman:", "###")) == ("abc", True)
    assert truncate_at_stop("abc", ("zz",)) == ("abc", False)


def test_it_applies_stop_strings(backend: TransformersBackend) -> None:
    free = backend.generate(["Once upon a"], 1, SamplingParams(max_new_tokens=12, seed=3))[0][0]
    if len(free.text) < 3:
        pytest.fail("the tiny model should write more than two characters in 12 tokens")
    stop = free.text[1:3]
    cut = backend.generate(
        ["Once upon a"], 1, SamplingParams(max_new_tokens=12, seed=3, stop=(stop,))
    )
    assert cut[0][0].text == free.text[: free.text.find(stop)]
    assert cut[0][0].finish_reason == "stop"


def test_it_explains_a_missing_model() -> None:
    with pytest.raises(BackendError, match="/no/such/model"):
        backend_for(BackendSpec(kind="transformers", source="/no/such/model"), reuse=False)


def test_it_reuses_the_loaded_backend(tiny_model_path: Path) -> None:
    spec = BackendSpec(kind="transformers", source=str(tiny_model_path))
    assert backend_for(spec) is backend_for(spec)
