"""``training.core.scoring``: a reward model scores completions as it was trained to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generation.backends.base import PromptInput
from training.core.data import encode_completion
from training.core.runners import TrainingError
from training.core.scoring import RewardScorer, score_completions

ITEMS: list[tuple[PromptInput, str]] = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Say yes.", "Yes."),
    ([{"role": "user", "content": "How do I bake bread?"}], "Mix flour, water and yeast."),
    ("Count.", "0 1 2 3 4 5 6 7 8 9 10 100 1000"),
]


@pytest.fixture(scope="module")
def reward_model_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained reward model (random score head) saved as a reward run saves one."""
    from training.core.hf import load_reward_model, load_tokenizer

    path = tmp_path_factory.mktemp("reward") / "final"
    tokenizer = load_tokenizer(str(tiny_model_path))
    load_reward_model(str(tiny_model_path), tokenizer, seed=3).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _hf_scores(path: Path, sequences: list[list[int]]) -> list[float]:
    """Scores from the model's own forward, one unpadded sequence at a time."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return [float(model(input_ids=torch.tensor([seq])).logits[0, 0]) for seq in sequences]


def test_it_scores_like_the_models_own_forward(reward_model_path: Path) -> None:
    scorer = RewardScorer(str(reward_model_path), device="cpu")

    scores = scorer.score(ITEMS, batch_size=3)

    expected = _hf_scores(reward_model_path, [scorer.encode(p, c) for p, c in ITEMS])
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(scores)) == len(ITEMS)  # the head is not constant


def test_it_reads_prompt_completion_and_eos(reward_model_path: Path) -> None:
    scorer = RewardScorer(str(reward_model_path), device="cpu", max_length=16)
    tokenizer = scorer.tokenizer

    ids = scorer.encode("Say yes.", "Yes.")

    expected, _ = encode_completion(
        tokenizer, "Say yes.", "Yes.", use_chat_template=False, max_length=16
    )
    assert ids == expected
    assert ids[-1] == tokenizer.eos_token_id
    assert len(scorer.encode(*ITEMS[3])) == 16  # truncated to max_length


def test_it_gives_the_same_scores_whatever_the_batch_size_and_keeps_the_order(
    reward_model_path: Path,
) -> None:
    scorer = RewardScorer(str(reward_model_path), device="cpu")

    one_by_one = scorer.score(ITEMS, batch_size=1)
    batched = scorer.score(ITEMS, batch_size=16)
    reversed_scores = scorer.score(ITEMS[::-1], batch_size=2)

    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert reversed_scores[::-1] == pytest.approx(one_by_one, abs=1e-5)


def test_it_renders_a_plain_prompt_with_the_chat_template_when_asked(
    reward_model_path: Path,
) -> None:
    plain = RewardScorer(str(reward_model_path), device="cpu")
    chat = RewardScorer(str(reward_model_path), device="cpu", use_chat_template=True)
    prompt = "Hello"

    assert chat.encode(prompt, "Hi") != plain.encode(prompt, "Hi")
    assert chat.encode(prompt, "Hi") == plain.encode([{"role": "user", "content": "Hello"}], "Hi")
    assert chat.tokenizer.decode(chat.encode(prompt, "Hi")).startswith("<|user|>\nHello")
    (score,) = chat.score([(prompt, "Hi")])
    assert score == pytest.approx(_hf_scores(reward_model_path, [chat.encode(prompt, "Hi")])[0])


def test_score_completions_loads_scores_and_frees(reward_model_path: Path) -> None:
    expected = RewardScorer(str(reward_model_path), device="cpu").score(ITEMS)

    scores = score_completions(str(reward_model_path), ITEMS, batch_size=2, device="cpu")

    assert scores == pytest.approx(expected, abs=1e-5)
    assert score_completions(str(reward_model_path), [], device="cpu") == []


def test_it_refuses_a_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="does not exist"):
        RewardScorer(str(tmp_path / "nowhere"))


def test_a_closed_scorer_refuses_to_score(reward_model_path: Path) -> None:
    scorer = RewardScorer(str(reward_model_path), device="cpu")
    scorer.close()

    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(ITEMS)
