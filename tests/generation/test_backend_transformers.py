"""The transformers backend for real, on the tiny offline model (a few seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generation.backends import BackendError, BackendSpec, SamplingParams, backend_for
from generation.backends.base import PromptInput
from generation.backends.prompting import encode_prompt, render_prompt
from generation.backends.transformers import TransformersBackend, truncate_at_stop
from generation.tiny_model import EOS, PAD

pytestmark = pytest.mark.slow

CONVERSATION = [{"role": "user", "content": "Tell me a joke."}]


@pytest.fixture(scope="module")
def backend(tiny_model_path: Path) -> TransformersBackend:
    return TransformersBackend(BackendSpec(kind="transformers", source=str(tiny_model_path)))


def test_it_returns_k_samples_per_prompt(backend: TransformersBackend) -> None:
    prompts: list[PromptInput] = ["Once upon a", CONVERSATION, "Hello"]
    result = backend.generate(prompts, 4, SamplingParams(max_new_tokens=6, seed=1))
    assert [len(group) for group in result] == [4, 4, 4]
    for group in result:
        for sample in group:
            assert isinstance(sample.text, str)
            assert sample.completion_tokens is not None and 1 <= sample.completion_tokens <= 6
            assert sample.prompt_tokens and sample.prompt_tokens > 0
            assert sample.finish_reason in {"stop", "length"}
            if sample.finish_reason == "length":
                assert sample.completion_tokens == 6
    # Four draws from a random model at temperature 1 are not all the same.
    assert len({s.text for s in result[0]}) > 1


def test_it_renders_conversations_through_the_chat_template(
    backend: TransformersBackend,
) -> None:
    text = render_prompt(backend.tokenizer, CONVERSATION, use_chat_template=False)
    assert text == "<|user|>\nTell me a joke.<|eos|>\n<|assistant|>\n"
    assert render_prompt(backend.tokenizer, "raw text", use_chat_template=False) is None
    plain, chat = backend.generate(
        ["Tell me a joke.", CONVERSATION], 1, SamplingParams(max_new_tokens=2, seed=0)
    )
    assert plain[0].prompt_tokens == len(backend.tokenizer("Tell me a joke.")["input_ids"])
    assert chat[0].prompt_tokens == len(
        backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    )


def test_it_wraps_a_plain_prompt_when_the_model_wants_the_chat_template(
    tiny_model_path: Path,
) -> None:
    chatty = TransformersBackend(
        BackendSpec(kind="transformers", source=str(tiny_model_path), use_chat_template=True)
    )
    assert encode_prompt(chatty.tokenizer, "Tell me a joke.", True) == encode_prompt(
        chatty.tokenizer, CONVERSATION, False
    )
    result = chatty.generate(["Tell me a joke."], 2, SamplingParams(max_new_tokens=2, seed=0))
    assert result[0][0].prompt_tokens == len(encode_prompt(chatty.tokenizer, CONVERSATION, False))
    chatty.close()


def test_it_is_reproducible_for_a_seed(backend: TransformersBackend) -> None:
    prompts: list[PromptInput] = ["Once upon a", CONVERSATION]
    params = SamplingParams(max_new_tokens=8, seed=7)
    first = backend.generate(prompts, 3, params)
    again = backend.generate(prompts, 3, params)
    other = backend.generate(prompts, 3, SamplingParams(max_new_tokens=8, seed=8))
    texts = [[s.text for s in group] for group in first]
    assert texts == [[s.text for s in group] for group in again]
    assert texts != [[s.text for s in group] for group in other]


def test_it_leaves_the_global_torch_rng_alone(backend: TransformersBackend) -> None:
    state = torch.get_rng_state()
    backend.generate(["Hello"], 2, SamplingParams(max_new_tokens=3, seed=1))
    assert torch.equal(state, torch.get_rng_state())


def test_it_keeps_prompt_order_while_batching_by_length(tiny_model_path: Path) -> None:
    prompts: list[PromptInput] = ["a b c d e f g h i j", "a", CONVERSATION, "a b c", "a b c d e"]
    expected = [len(encode_prompt(_tokenizer(tiny_model_path), p, False)) for p in prompts]
    params = SamplingParams(max_new_tokens=3, seed=0)
    for batch_size in (1, 2, 8):
        small = TransformersBackend(
            BackendSpec(
                kind="transformers",
                source=str(tiny_model_path),
                options={"batch_size": batch_size},
            )
        )
        result = small.generate(prompts, 2, params)
        assert [len(group) for group in result] == [2] * len(prompts)
        assert [group[0].prompt_tokens for group in result] == expected
        small.close()


def test_it_samples_greedily_at_temperature_zero(backend: TransformersBackend) -> None:
    result = backend.generate(["Once upon a"], 3, SamplingParams(temperature=0, max_new_tokens=5))
    assert len({s.text for s in result[0]}) == 1
    again = backend.generate(["Once upon a"], 1, SamplingParams(temperature=0, max_new_tokens=5))
    assert again[0][0].text == result[0][0].text


def test_it_generates_to_the_limit_when_told_to_ignore_eos(tiny_model_path: Path) -> None:
    fixed = TransformersBackend(
        BackendSpec(kind="transformers", source=str(tiny_model_path), options={"ignore_eos": True})
    )
    result = fixed.generate(["Hi", "Once upon a"], 3, SamplingParams(max_new_tokens=7, seed=2))
    fixed.close()
    for group in result:
        assert [(s.completion_tokens, s.finish_reason) for s in group] == [(7, "length")] * 3


def test_it_counts_tokens_up_to_and_including_eos(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    words = tok("Once upon a time", add_special_tokens=False)["input_ids"]
    ids = tok.convert_tokens_to_ids([EOS, PAD])
    assert isinstance(ids, list)  # a list of tokens gives a list of ids
    eos, pad = ids
    params = SamplingParams(max_new_tokens=len(words) + 3)
    # A row that ended early is padded up to the batch's longest row.
    ended = backend._sample([*words, eos, pad, pad], prompt_tokens=5, params=params)
    assert (ended.text, ended.completion_tokens, ended.finish_reason) == (
        "Once upon a time",
        len(words) + 1,
        "stop",
    )
    full = backend._sample(
        [*words, *words][: params.max_new_tokens], prompt_tokens=5, params=params
    )
    assert (full.completion_tokens, full.finish_reason) == (params.max_new_tokens, "length")
    # Without stop strings only EOS ends a row early: a pad token at the end was sampled.
    sampled_pad = backend._sample([*words, pad, pad, pad], prompt_tokens=5, params=params)
    assert (sampled_pad.completion_tokens, sampled_pad.finish_reason) == (len(words) + 3, "length")
    # With stop strings a row may have ended early and been padded.
    with_stop = SamplingParams(max_new_tokens=len(words) + 3, stop=("zzz",))
    padded = backend._sample([*words, pad, pad, pad], prompt_tokens=5, params=with_stop)
    assert (padded.text, padded.completion_tokens, padded.finish_reason) == (
        "Once upon a time",
        len(words),
        "stop",
    )


def test_it_truncates_at_the_earliest_stop_string() -> None:
    assert truncate_at_stop("abc###def\n\nHuman: x", ("\n\nHuman:", "###")) == ("abc", True)
    assert truncate_at_stop("abc", ("zz",)) == ("abc", False)
    assert truncate_at_stop("abc", ()) == ("abc", False)


def test_it_applies_stop_strings(backend: TransformersBackend) -> None:
    params = SamplingParams(max_new_tokens=12, seed=3)
    free = backend.generate(["Once upon a"], 1, params)[0][0]
    if len(free.text) < 4:
        pytest.fail("the tiny model should write more than three characters in 12 tokens")
    stop = free.text[2:4]
    cut = backend.generate(
        ["Once upon a"], 1, SamplingParams(max_new_tokens=12, seed=3, stop=(stop,))
    )[0][0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    # Generation ended at the token that completed the stop string, not at the limit.
    assert cut.completion_tokens is not None and free.completion_tokens is not None
    assert 1 <= cut.completion_tokens <= free.completion_tokens
    tokens = backend.tokenizer(free.text, add_special_tokens=False)["input_ids"]
    assert stop in backend.tokenizer.decode(tokens[: cut.completion_tokens])


def test_it_refuses_a_prompt_longer_than_the_model(backend: TransformersBackend) -> None:
    with pytest.raises(BackendError, match="exceeds the model's 2048 positions"):
        backend.generate(["once " * 2100], 1, SamplingParams(max_new_tokens=4))


def test_it_explains_a_missing_model() -> None:
    with pytest.raises(BackendError, match="/no/such/model"):
        backend_for(BackendSpec(kind="transformers", source="/no/such/model"), reuse=False)


def test_it_explains_a_folder_that_holds_no_model(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot load model"):
        TransformersBackend(BackendSpec(kind="transformers", source=str(tmp_path)))


def test_it_explains_an_unknown_dtype(tiny_model_path: Path) -> None:
    with pytest.raises(BackendError, match="unknown dtype 'float99'"):
        TransformersBackend(
            BackendSpec(
                kind="transformers", source=str(tiny_model_path), options={"dtype": "float99"}
            )
        )


def test_it_refuses_to_generate_after_close(tiny_model_path: Path) -> None:
    closed = TransformersBackend(BackendSpec(kind="transformers", source=str(tiny_model_path)))
    closed.close()
    closed.close()  # twice is harmless
    with pytest.raises(BackendError, match="closed"):
        closed.generate(["Hi"], 1, SamplingParams())


def test_it_reuses_the_loaded_backend(tiny_model_path: Path) -> None:
    spec = BackendSpec(kind="transformers", source=str(tiny_model_path))
    assert backend_for(spec) is backend_for(spec)


def _tokenizer(path: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_it_returns_the_decoded_text_without_cleaning_up_spaces(tiny_model_path: Path) -> None:
    # A tokenizer config may ask decode() to "clean up tokenization spaces" (" ." -> ".",
    # " 's" -> "'s"): that would rewrite what the model wrote, and the text is stored exactly.
    # (transformers 5 ignores the request for BPE unless a second flag insists; WordPiece and
    # others clean up. Both are set here so that the tiny BPE tokenizer would.)
    fresh = TransformersBackend(BackendSpec(kind="transformers", source=str(tiny_model_path)))
    fresh.tokenizer.clean_up_tokenization_spaces = True
    fresh.tokenizer.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = True
    text = "  Hello , world .  It 's   ok ?\n"
    ids = fresh.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert fresh.tokenizer.decode(ids) != text  # what the clean-up would have stored
    sample = fresh._sample(ids, prompt_tokens=1, params=SamplingParams(max_new_tokens=len(ids)))
    assert sample.text == text
    stopped = fresh._sample(
        ids, prompt_tokens=1, params=SamplingParams(max_new_tokens=len(ids), stop=("?",))
    )
    assert stopped.text == "  Hello , world .  It 's   ok "
    fresh.close()
