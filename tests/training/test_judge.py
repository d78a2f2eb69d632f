"""The constitution judge (training.core.judge): the CAI prompt, the verdict tokens'
log-probs on the tiny Llama checked against the model's own logits, the position-bias
correction, the ranking of k answers, and a served judge's replies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from training.core import judge
from training.core.hf import load_causal_lm, load_tokenizer

PRINCIPLE = "Which response is more helpful, honest and harmless?"


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> tuple[Any, Any]:
    tokenizer = load_tokenizer(str(tiny_model_path))
    return load_causal_lm(str(tiny_model_path), tokenizer), tokenizer


def _independent_logp(model: Any, tokenizer: Any, text: str, verdict: str) -> float:
    """log P(verdict | text) the plain way: one forward pass over the whole sequence, the
    log-softmax of the logits before each verdict token."""
    context = tokenizer(text)["input_ids"]
    tail = tokenizer(verdict, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([context + tail])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    return sum(float(logps[len(context) + i - 1, t]) for i, t in enumerate(tail))


def test_it_asks_the_cai_multiple_choice_question() -> None:
    text = judge.judge_prompt("Hi there", "Hello!", "Go away.", PRINCIPLE)
    assert text == (
        "Consider the following conversation between a human and an assistant:\n"
        "Human: Hi there\n\n"
        "Which response is more helpful, honest and harmless?\n"
        "Options:\n"
        "(A) Hello!\n"
        "(B) Go away.\n"
        "The answer is: ("
    )
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes?"}]
    served = judge.judge_prompt(chat, "a", "b", PRINCIPLE, served=True)
    assert "Human: Hi\n\nAssistant: Yes?\n\n" in served
    assert served.endswith("(B) b\nAnswer with (A) or (B) only.\nThe answer is:")
    assert judge.principles_parse("  one \n\n two\r\n") == ["one", "two"]


def test_it_scores_the_verdicts_with_the_models_own_log_probs(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer = tiny
    texts = [
        judge.judge_prompt("What is 2+2?", "4", "5", PRINCIPLE),
        judge.judge_prompt(
            "Name a colour.", "Blue, like the sky on a clear day.", "No.", PRINCIPLE
        ),
        "short",
    ]
    got = judge.verdict_logps(model, tokenizer, texts, batch_size=4)  # rows of unequal length
    expected = [[_independent_logp(model, tokenizer, t, v) for v in ("A", "B")] for t in texts]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=0, atol=1e-4)
    # A single order's decision is the argmax of the two log-probs.
    for (a, b), (ea, eb) in zip(got, expected, strict=True):
        assert (a > b) == (ea > eb) and a != b
    # The same context in another batch gives the same values (no padding leaks in).
    alone = judge.verdict_logps(model, tokenizer, texts[1:2], batch_size=1)
    torch.testing.assert_close(torch.tensor(alone[0]), torch.tensor(got[1]), rtol=0, atol=1e-5)


def test_it_averages_both_orders_so_a_letter_bias_cancels() -> None:
    # A judge that always likes "A" by 2 nats says nothing about the answers.
    assert judge.pair_log_odds((-1.0, -3.0), (-1.0, -3.0)) == 0.0
    # The same bias on top of a real preference for the first answer (+1 nat each way):
    # forward A-B = 2 + 1, backward B-A = -2 + 1; the mean keeps the preference only.
    assert judge.pair_log_odds((-1.0, -4.0), (-2.0, -3.0)) == pytest.approx(1.0)


def test_it_scores_a_tasks_pairs_over_both_orders_and_every_principle(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer = tiny
    answers = {7: "Four.", 3: "Five, I think."}
    principles = [PRINCIPLE, "Which response is less harmful?"]
    odds = judge.score_pairs(
        "What is 2+2?", answers, principles, partial(judge.verdict_logps, model, tokenizer)
    )
    assert list(odds) == [(3, 7)]  # pairs by ascending id: the first is answer 3

    def one(principle: str) -> float:
        forward = judge.judge_prompt("What is 2+2?", answers[3], answers[7], principle)
        backward = judge.judge_prompt("What is 2+2?", answers[7], answers[3], principle)
        f = [_independent_logp(model, tokenizer, forward, v) for v in "AB"]
        b = [_independent_logp(model, tokenizer, backward, v) for v in "AB"]
        return ((f[0] - f[1]) + (b[1] - b[0])) / 2

    assert odds[(3, 7)] == pytest.approx((one(principles[0]) + one(principles[1])) / 2, abs=1e-4)
    order = judge.order_by_log_odds([7, 3], odds)
    assert order == ([[3], [7]] if odds[(3, 7)] > 0 else [[7], [3]])


def test_it_orders_k_answers_by_their_mean_log_odds() -> None:
    # 1 beats 2 by 2 and 3 by 4; 2 beats 3 by 1: means 3, -0.5, -2.5.
    odds = {(1, 2): 2.0, (1, 3): 4.0, (2, 3): 1.0}
    assert judge.order_by_log_odds([3, 1, 2], odds) == [[1], [2], [3]]
    # A cycle with equal margins ties everyone.
    cycle = {(1, 2): 1.0, (2, 3): 1.0, (1, 3): -1.0}
    assert judge.order_by_log_odds([1, 2, 3], cycle) == [[1, 2, 3]]
    assert judge.order_by_log_odds([5, 9], {(5, 9): -0.5}) == [[9], [5]]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("(A)", "A"),
        (" (B) because it is kinder", "B"),
        ("The answer is ( A )", "A"),
        ("B. The second one.", "B"),
        ("Both are fine.", None),
        ("", None),
        ("As an AI", None),
    ],
)
def test_it_parses_a_served_judges_reply(reply: str, verdict: str | None) -> None:
    assert judge.parse_verdict(reply) == verdict


def test_it_reads_the_log_odds_at_the_verdict_token() -> None:
    logprobs = [{" (": -0.1, " The": -2.5}, {"A": -0.2, "B": -1.9, " A": -3.0}, {")": -0.01}]
    assert judge.reply_log_odds(logprobs) == pytest.approx(1.7)
    assert judge.reply_log_odds([{"A": -0.1, "C": -2.0}]) is None  # B not among the top
    assert judge.reply_log_odds(None) is None
    assert judge.reply_log_odds([{"(B": -0.5, "(A": -math.inf, "A": -4.0}]) == pytest.approx(-3.5)


def test_a_served_judge_uses_log_probs_else_votes_else_gives_up() -> None:
    answers = {1: "kind", 2: "rude"}

    def ask_with(replies: Sequence[judge.Reply]) -> Any:
        def ask(texts: list[str]) -> list[judge.Reply]:
            assert len(texts) == 2 and "(A) kind" in texts[0] and "(A) rude" in texts[1]
            return list(replies)

        return ask

    # Log-probs both ways: forward A by 2, backward (A = "rude") B by 1 -> (2 + 1) / 2.
    both = [("(A)", [{"A": -0.1, "B": -2.1}]), ("(B)", [{"A": -1.5, "B": -0.5}])]
    assert judge.score_pairs_served("q", answers, ["p"], ask_with(both)) == {(1, 2): 1.5}
    # No log-probs: votes, +1 for the first answer each time it wins.
    votes = [("(A)", None), ("B", None)]
    assert judge.score_pairs_served("q", answers, ["p"], ask_with(votes)) == {(1, 2): 1.0}
    split = [("(A)", None), ("(A)", None)]  # always "A": a position bias, no preference
    assert judge.score_pairs_served("q", answers, ["p"], ask_with(split)) == {(1, 2): 0.0}
    assert (
        judge.score_pairs_served("q", answers, ["p"], ask_with([("(A)", None), ("?", None)]))
        is None
    )
