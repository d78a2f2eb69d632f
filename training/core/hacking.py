"""Signs that a policy is gaming its reward model, read from an RL run's curves.

A reward model is right only near the text it was trained on. A policy that finds a region
the reward model never saw (a repeated word, an odd length) can drive the score up while
the quality the score stood for stays where it was or falls: Gao et al. 2023 ("Scaling
Laws for Reward Model Overoptimization") measure it, and the issue this module answers
saw PPO push a 92%-accurate reward model's score from -5 to +6 while the rule it had
learned went from 6% to 10%. The score alone cannot show this; what moves with it can.
:func:`reward_hacking_check` flags a run whose score rises while its completion length or
its KL to the reference leave their normal range:

- **Baseline**: the first 20% of the reported rollouts (at least 3, at most 10), before
  the policy has moved far.
- **Recent**: the last ``window`` rollouts (20% of them, at least 3, at most 10), after the
  baseline.
- **Score rising**: the recent mean score exceeds the baseline mean by more than the
  baseline's standard deviation.
- **Length out of range**: the recent mean length is more than ``max(3 sd, 25% of the
  mean, 2 tokens)`` from the baseline mean.
- **KL out of range**: the recent mean KL passes ``2 * kl_target`` nats (the KL that a
  normalised reward at the default beta is worth; see ``RLConfig``).

The check is repeated over every window ending at each reported rollout, so it also says
at which step the warning would first have fired. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["HackingCheck", "reward_hacking_check"]

MIN_BASELINE = 3
MAX_BASELINE = 10
LENGTH_MIN_TOLERANCE = 2.0


@dataclass(frozen=True)
class HackingCheck:
    """What :func:`reward_hacking_check` found.

    ``ready`` is False while there are too few rollouts to judge. ``reasons`` name what
    left its range in the latest window ("length", "kl"); ``first_step`` is the step at
    which a window first met the rule (even if the latest one no longer does).
    """

    ready: bool
    warning: bool = False
    reasons: tuple[str, ...] = ()
    first_step: int | None = None
    baseline_score: float | None = None
    recent_score: float | None = None
    length_range: tuple[float, float] | None = None
    recent_length: float | None = None
    kl_limit: float | None = None
    recent_kl: float | None = None
    recent_beyond_reference: float | None = None
    """Shown, not judged: the recent share of completions scored above every reference
    answer (None when the run does not report it)."""
    messages: tuple[str, ...] = field(default=())


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _sd(values: Sequence[float]) -> float:
    mean = _mean(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def _window(n: int) -> int:
    return max(MIN_BASELINE, min(MAX_BASELINE, n // 5))


def reward_hacking_check(
    steps: Sequence[int],
    metrics: Mapping[str, Sequence[float | None]],
    *,
    kl_target: float,
) -> HackingCheck:
    """Judge an RL run's curves: ``metrics`` holds ``score``, ``kl`` and
    ``response_length``, one value (or None) per entry of ``steps``.

    Only steps where all three are known count. Returns ``ready=False`` until there are
    enough of them for a baseline and a separate recent window.
    """
    names = ("score", "kl", "response_length")
    rows = [
        (step, *values)
        for step, *values in zip(
            steps, *(metrics.get(n, [None] * len(steps)) for n in names), strict=True
        )
        if all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    ]
    n = len(rows)
    baseline_n = _window(n)
    window = _window(n)
    if n < baseline_n + window:
        return HackingCheck(ready=False)
    base = rows[:baseline_n]
    base_score = [r[1] for r in base]
    base_length = [r[3] for r in base]
    score_mean, score_sd = _mean(base_score), _sd(base_score)
    length_mean = _mean(base_length)
    tolerance = max(3 * _sd(base_length), 0.25 * abs(length_mean), LENGTH_MIN_TOLERANCE)
    length_range = (length_mean - tolerance, length_mean + tolerance)
    kl_limit = 2 * kl_target

    def judge(end: int) -> tuple[bool, tuple[str, ...], float, float, float]:
        recent = rows[end - window : end]
        score = _mean([r[1] for r in recent])
        kl = _mean([r[2] for r in recent])
        length = _mean([r[3] for r in recent])
        rising = score - score_mean > max(score_sd, 1e-9)
        reasons = []
        if not length_range[0] <= length <= length_range[1]:
            reasons.append("length")
        if kl > kl_limit:
            reasons.append("kl")
        return rising and bool(reasons), tuple(reasons), score, kl, length

    first_step = None
    for end in range(baseline_n + window, n + 1):
        if judge(end)[0]:
            first_step = rows[end - 1][0]
            break
    warning, reasons, score, kl, length = judge(n)
    beyond = [
        v
        for v in metrics.get("beyond_reference", ())
        if isinstance(v, int | float) and math.isfinite(v)
    ][-window:]
    messages = []
    if warning:
        rise = f"the score rose from {score_mean:.3g} to {score:.3g}"
        if "length" in reasons:
            messages.append(
                f"{rise} while the completion length went to {length:.3g} tokens, outside "
                f"its normal range {length_range[0]:.3g}-{length_range[1]:.3g}"
            )
        if "kl" in reasons:
            messages.append(
                f"{rise} while the KL to the reference went to {kl:.3g} nats, past "
                f"{kl_limit:.3g} (twice kl_target)"
            )
    return HackingCheck(
        ready=True,
        warning=warning,
        reasons=reasons if warning else (),
        first_step=first_step,
        baseline_score=score_mean,
        recent_score=score,
        length_range=length_range,
        recent_length=length,
        kl_limit=kl_limit,
        recent_kl=kl,
        recent_beyond_reference=_mean(beyond) if beyond else None,
        messages=tuple(messages),
    )
