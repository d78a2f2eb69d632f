"""The hacking case end to end: PPO and GRPO against a reward model that only half learned
its rule drive its score far past anything it saw, and the run page's check says so."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from tests.training.test_runner_grpo import GRPO_FAST
from tests.training.test_runner_ppo import FAST, PROMPTS, _build_reward_model_for_a_direction
from training.core.data import PromptData
from training.core.hacking import reward_hacking_check
from training.core.reporting import ListReporter
from training.core.runners import RunSpec, run_training
from training.core.scoring import RewardScorer, RewardStats, reward_stats_of

pytestmark = pytest.mark.slow

GOOD = ("yes", "sure", "glad", "thanks")
BAD = ("no", "never", "hate", "wrong")
FILLER = ("the", "a", "and", "it", "is", "to", "of", "we", "you", "that")


def _rule_pairs(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """``(prompt, chosen, rejected)`` by the rule "a good word, and before any bad one".

    Three pairs in five differ in which words they hold (a good word against a bad one);
    two in five hold one of each and differ only in their order. The reward model below
    reads a bag of words, so it can learn the first kind and not the second: it learns
    the rule by half.
    """

    def words() -> list[str]:
        return [rng.choice(FILLER) for _ in range(rng.randint(3, 6))]

    def one_kind(good: bool) -> str:
        text = words()
        text.insert(rng.randrange(len(text) + 1), rng.choice(GOOD if good else BAD))
        return " ".join(text)

    def ordered(good_first: bool) -> str:
        text = words()
        first, second = rng.choice(GOOD), rng.choice(BAD)
        if not good_first:
            first, second = second, first
        i = rng.randrange(len(text) + 1)
        text.insert(i, first)
        text.insert(rng.randrange(i + 1, len(text) + 1), second)
        return " ".join(text)

    pairs = []
    for i in range(n):
        prompt = f"Question {i}: is it fine?"
        if i % 5 < 2:
            pairs.append((prompt, ordered(True), ordered(False)))
        else:
            pairs.append((prompt, one_kind(True), one_kind(False)))
    return pairs


def _train_reward_model_on_the_rule(
    tiny_model_path: Path, path: Path
) -> tuple[Path, float, RewardStats]:
    """A bag-of-words reward model (the tiny LM's classifier, edited so that it reads the
    mean of its tokens' embeddings), its score head trained with the Bradley-Terry loss
    on 48 pairs of the rule. Returns its folder, its accuracy on 48 held-out pairs, and
    its stats on the chosen answers it was trained on."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.core.data import encode_completion
    from training.core.hf import pad_right, reward_scores
    from training.core.losses import bradley_terry_loss

    _build_reward_model_for_a_direction(tiny_model_path, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    rng = random.Random(0)
    train, held_out = _rule_pairs(rng, 48), _rule_pairs(rng, 48)

    def batch(items: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [
            encode_completion(tokenizer, p, c, use_chat_template=False, max_length=64)[0]
            for p, c in items
        ]
        return pad_right(ids, tokenizer.pad_token_id)

    chosen, rejected = batch([(p, c) for p, c, _ in train]), batch([(p, r) for p, _, r in train])
    model.requires_grad_(False)
    model.score.weight.requires_grad_(True)
    optimizer = torch.optim.Adam([model.score.weight], lr=0.05)
    for _ in range(4):
        loss, _ = bradley_terry_loss(reward_scores(model, *chosen), reward_scores(model, *rejected))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        won = reward_scores(model, *batch([(p, c) for p, c, _ in held_out])) > reward_scores(
            model, *batch([(p, r) for p, _, r in held_out])
        )
    model.save_pretrained(path)
    scorer = RewardScorer(str(path), device="cpu", max_length=64)
    stats = reward_stats_of(scorer.score([(p, c) for p, c, _ in train]), reference="chosen")
    scorer.close()
    return path, float(won.float().mean()), stats


@pytest.mark.parametrize("kind", ["ppo", "grpo"])
def test_the_run_page_check_warns_when_the_policy_games_a_half_learned_reward_model(
    tiny_model_path: Path, tmp_path: Path, kind: str
) -> None:
    reward_path, accuracy, stats = _train_reward_model_on_the_rule(
        tiny_model_path, tmp_path / "reward"
    )
    # Half learned: well above chance, well below the rule.
    assert 0.6 < accuracy < 0.9, accuracy

    # Normalised rewards at the beta of the collapse (0.05, the old default), a
    # high learning rate, 16 rollouts of 8 prompts x 2 samples.
    base = FAST if kind == "ppo" else GRPO_FAST
    config = dataclasses.replace(
        base,
        normalize_rewards=True,
        init_kl_coef=0.05,
        learning_rate=1e-2,
        rollout_batch_prompts=8,
        rollout_k=2,
        minibatch_size=8,
        batch_size=8,
        ppo_epochs=4,
        max_new_tokens=8,
        max_steps=16,
        seed=3,
    )
    spec = RunSpec(
        kind=kind,  # type: ignore[arg-type]
        config=config,
        model_path=str(tiny_model_path),
        output_dir=tmp_path / "run",
        reward_model_path=str(reward_path),
        reward_stats=stats,
        device="cpu",
    )
    reporter = ListReporter()
    run_training(spec, PromptData(train=PROMPTS), reporter)

    reports = [r for r in reporter.reports if "score" in r.metrics]
    assert len(reports) == 16
    steps = [r.step for r in reports]
    curves = {
        name: [r.metrics[name] for r in reports]
        for name in ("score", "kl", "response_length", "beyond_reference")
    }
    check = reward_hacking_check(steps, curves, kl_target=config.kl_target)

    assert check.ready and check.warning, check
    assert "kl" in check.reasons
    assert check.recent_kl is not None and check.recent_kl > 2 * config.kl_target
    # It fires while the run goes on, not at its start and not only at its end.
    assert check.first_step is not None and 4 <= check.first_step <= 14, check.first_step
    # Up from about the reference answers' mean to well above it.
    assert check.recent_score is not None and check.baseline_score is not None
    assert (check.recent_score - stats.mean) / stats.std > 1.0
    assert check.recent_score - check.baseline_score > 1.0
    # Samples the reward model scores above every answer it was trained to prefer: few at
    # the start, most by the end (PPO with this seed: 6% of the first rollouts', all of
    # the last ones').
    first = curves["beyond_reference"][:3]
    assert sum(first) / 3 < 0.25, first
    assert check.recent_beyond_reference is not None and check.recent_beyond_reference > 0.6
