"""AI feedback from a constitution (Constitutional AI's feedback model, Bai et al. 2022,
"Constitutional AI: Harmlessness from AI Feedback", section 4.1).

A language model is shown a conversation, a principle and two answers as a multiple-choice
question, and its preference is read from the likelihood of the two verdicts:

    Consider the following conversation between a human and an assistant:
    Human: <prompt>

    <principle>
    Options:
    (A) <answer A>
    (B) <answer B>
    The answer is: (

The *log-odds* that A is better under one principle is ``log P("A" | text) - log P("B" |
text)``, each verdict's tokens scored after the text (:func:`verdict_logps`), so any causal
LM can judge, the tiny test Llama included. Language models favour a position; each pair is
asked in both orders and the two log-odds (the second's sign flipped, its "B" being the
first answer) are averaged, which cancels a constant preference for "A" or "B"
(:func:`pair_log_odds`). With several principles (one per line of the constitution) the
log-odds are averaged over them, the deterministic form of the paper's ensemble over sampled
principles. A task with k > 2 answers is ordered by each answer's mean log-odds against the
others (:func:`order_by_log_odds`); equal means tie.

A served model (an OpenAI-compatible server) is asked the same question without the open
parenthesis, told to answer "(A)" or "(B)", and its reply is parsed (:func:`parse_verdict`);
when the server returns the top log-probabilities of the reply's tokens, the log-odds are
read from them at the verdict token instead (:func:`reply_log_odds`).

Nothing here imports Django; torch is imported when a function runs.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from generation.backends.base import PromptInput
from generation.backends.prompting import render_messages

__all__ = [
    "MAX_PRINCIPLES",
    "VERDICTS",
    "judge_prompt",
    "order_by_log_odds",
    "pair_log_odds",
    "parse_verdict",
    "principles_parse",
    "reply_log_odds",
    "score_pairs",
    "score_pairs_served",
    "verdict_logps",
]

VERDICTS = ("A", "B")
MAX_PRINCIPLES = 32
"""At most this many principles (lines) in one constitution: each one costs two forward
passes per pair of answers."""

SERVED_INSTRUCTION = "Answer with (A) or (B) only."


def principles_parse(text: str) -> list[str]:
    """The principles of a constitution's text: one per non-blank line, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _conversation(prompt: PromptInput) -> str:
    if isinstance(prompt, list):
        return render_messages(prompt).replace("User:", "Human:")
    return f"Human: {prompt}"


def judge_prompt(
    prompt: PromptInput, answer_a: str, answer_b: str, principle: str, *, served: bool = False
) -> str:
    """The multiple-choice question of the module docstring; ``served`` ends it with an
    instruction to answer "(A)" or "(B)" instead of an open parenthesis to complete."""
    head = (
        "Consider the following conversation between a human and an assistant:\n"
        f"{_conversation(prompt)}\n\n"
        f"{principle}\n"
        "Options:\n"
        f"(A) {answer_a}\n"
        f"(B) {answer_b}\n"
    )
    if served:
        return f"{head}{SERVED_INSTRUCTION}\nThe answer is:"
    return f"{head}The answer is: ("


def verdict_logps(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    verdicts: Sequence[str] = VERDICTS,
    max_length: int = 1024,
    batch_size: int = 8,
) -> list[list[float]]:
    """``log P(verdict | text)`` for every text and verdict: ``[len(texts)][len(verdicts)]``.

    The text and the verdict are tokenized apart and concatenated (the text with the
    tokenizer's special tokens, the verdict without), so every verdict is scored after the
    same context tokens; a verdict of several tokens sums their log-probs. A context longer
    than ``max_length`` minus the verdict loses its beginning (the question and the options
    are at its end). Greedy and deterministic: no sampling, dropout off (``model.eval()``).
    """
    import torch

    from training.core.hf import pad_right
    from training.core.logps import IGNORE_INDEX, causal_lm_logps

    verdict_ids = [list(tokenizer(v, add_special_tokens=False)["input_ids"]) for v in verdicts]
    if any(not ids for ids in verdict_ids):
        raise ValueError("a verdict encodes to no tokens")
    rows: list[tuple[list[int], int]] = []  # (ids, how many trailing ids are scored)
    for text in texts:
        context = list(tokenizer(text)["input_ids"])
        for ids in verdict_ids:
            keep = max(1, max_length - len(ids))
            rows.append((context[-keep:] + ids, len(ids)))
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums: list[float] = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            input_ids, mask = pad_right([ids for ids, _ in batch], pad, device)
            labels = torch.full_like(input_ids, IGNORE_INDEX)
            for row, (ids, scored) in enumerate(batch):
                labels[row, len(ids) - scored : len(ids)] = input_ids[
                    row, len(ids) - scored : len(ids)
                ]
            logps, _ = causal_lm_logps(model, input_ids, mask, labels)
            sums.extend(float(v) for v in logps.cpu())
    width = len(verdicts)
    return [sums[i : i + width] for i in range(0, len(sums), width)]


def pair_log_odds(forward: Sequence[float], backward: Sequence[float]) -> float:
    """The position-debiased log-odds that the first answer is better.

    ``forward`` is ``(log P(A), log P(B))`` with the first answer shown as (A);
    ``backward`` the same with the answers swapped, where "B" names the first answer. The
    mean of ``forward[A] - forward[B]`` and ``backward[B] - backward[A]``: a judge that
    always prefers one letter by a constant margin scores 0 on a pair it cannot tell apart.
    """
    return ((forward[0] - forward[1]) + (backward[1] - backward[0])) / 2


def score_pairs(
    prompt: PromptInput,
    answers: Mapping[int, str],
    principles: Sequence[str],
    log_probs: Callable[[list[str]], list[list[float]]],
) -> dict[tuple[int, int], float]:
    """The mean log-odds over the principles that ``a`` beats ``b``, for every pair ``(a,
    b)`` of answer ids with ``a < b``: one call of ``log_probs`` (texts -> ``[[log P(A),
    log P(B)]]``, :func:`verdict_logps` bound to a model) for the whole task."""
    if not principles:
        raise ValueError("a constitution needs at least one principle")
    pairs = list(itertools.combinations(sorted(answers), 2))
    texts = [
        judge_prompt(prompt, answers[x], answers[y], principle)
        for a, b in pairs
        for principle in principles
        for x, y in ((a, b), (b, a))
    ]
    values = iter(log_probs(texts))
    odds: dict[tuple[int, int], float] = {}
    for pair in pairs:
        per_principle = [pair_log_odds(next(values), next(values)) for _ in principles]
        odds[pair] = sum(per_principle) / len(per_principle)
    return odds


def order_by_log_odds(ids: Sequence[int], odds: Mapping[tuple[int, int], float]) -> list[list[int]]:
    """A best-first ranking with ties from pairwise log-odds (``odds[(a, b)]``, a < b, that a
    beats b): each answer's score is its mean log-odds against every other answer (for a
    pair, the sign of its one log-odds); equal scores tie, ids ascending within a group."""
    scores: dict[int, float] = {}
    for item in ids:
        against = [
            odds[(item, other)] if item < other else -odds[(other, item)]
            for other in ids
            if other != item
        ]
        scores[item] = sum(against) / len(against) if against else 0.0
    groups: dict[float, list[int]] = {}
    for item, score in scores.items():
        groups.setdefault(score, []).append(item)
    return [sorted(groups[s]) for s in sorted(groups, reverse=True)]


_VERDICT = re.compile(r"\(\s*([AB])\s*\)|^\W*([AB])\b")


def parse_verdict(reply: str) -> str | None:
    """ "A" or "B" from a served judge's reply: the first "(A)" or "(B)" in it, else a reply
    that starts with the bare letter; None when neither (the reply cannot be used)."""
    match = _VERDICT.search(reply.strip())
    if match is None:
        return None
    return match.group(1) or match.group(2)


def _letter(token: str) -> str | None:
    stripped = token.strip().strip("()").strip()
    return stripped if stripped in VERDICTS else None


def reply_log_odds(token_logprobs: Sequence[Mapping[str, float]] | None) -> float | None:
    """``log P(A) - log P(B)`` at the reply's verdict token, from the top log-probabilities
    a server returned for each reply token (token text -> log-prob): the first position
    whose alternatives hold both letters (as "A", " A", "(A" and the like, the likeliest
    spelling of each). None without log-probs or when no position has both."""
    for alternatives in token_logprobs or ():
        best: dict[str, float] = {}
        for token, logp in alternatives.items():
            letter = _letter(token)
            if letter is not None and math.isfinite(logp):
                best[letter] = max(logp, best.get(letter, -math.inf))
        if len(best) == 2:
            return best["A"] - best["B"]
    return None


Reply = tuple[str, Sequence[Mapping[str, float]] | None]  # (text, per-token top log-probs)


def score_pairs_served(
    prompt: PromptInput,
    answers: Mapping[int, str],
    principles: Sequence[str],
    ask: Callable[[list[str]], list[Reply]],
) -> dict[tuple[int, int], float] | None:
    """As :func:`score_pairs` for a served judge: ``ask`` sends the questions (``served``
    form) and returns the replies. When every reply carries both letters' log-probs, the
    log-odds come from them; else from the parsed verdicts, each order a vote of +1 (the
    first answer) or -1, averaged like the log-odds. None when a reply has neither a
    verdict nor log-probs: the task gets no label."""
    if not principles:
        raise ValueError("a constitution needs at least one principle")
    pairs = list(itertools.combinations(sorted(answers), 2))
    texts = [
        judge_prompt(prompt, answers[x], answers[y], principle, served=True)
        for a, b in pairs
        for principle in principles
        for x, y in ((a, b), (b, a))
    ]
    replies = ask(texts)
    from_logprobs = [reply_log_odds(logprobs) for _, logprobs in replies]
    if all(v is not None for v in from_logprobs):
        values: list[float] = [v for v in from_logprobs if v is not None]
    else:
        verdicts = [parse_verdict(text) for text, _ in replies]
        if any(v is None for v in verdicts):
            return None
        values = [1.0 if v == "A" else -1.0 for v in verdicts]
    # Each value favours the answer shown as (A): the first answer in the forward order,
    # the second in the backward one; as in pair_log_odds, (forward - backward) / 2.
    it = iter(values)
    odds: dict[tuple[int, int], float] = {}
    for pair in pairs:
        per_principle = [(next(it) - next(it)) / 2 for _ in principles]
        odds[pair] = sum(per_principle) / len(per_principle)
    return odds
