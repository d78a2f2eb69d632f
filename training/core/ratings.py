"""Ratings from pairwise human judgements: Bradley-Terry strengths, bootstrap intervals, win-rates.

Pure numpy/scipy, no Django and no torch: the evaluation pages, the API and
``manage.py leaderboard`` feed it plain arrays of comparisons.

A comparison is a row ``(a, b, y)`` of an ``[N, 3]`` array (or a sequence of triples): items
``a`` and ``b`` are integers in ``[0, n_items)``, and ``y`` is ``a``'s score in the game:
``1`` when ``a`` won, ``0`` when ``b`` won, ``0.5`` for a tie.

The Bradley-Terry model gives every item a strength θ_i (a log-odds) with

    P(a beats b) = σ(θ_a − θ_b) = 1 / (1 + exp(−(θ_a − θ_b)))                    (Bradley & Terry 1952)

and the strengths are fitted by maximum likelihood: the logistic regression without intercept
whose features are ``+1`` for ``a`` and ``−1`` for ``b``, as Chatbot Arena does (Chiang et al.
2024, "Chatbot Arena: An Open Platform for Evaluating LLMs by Human Preference", §5). A tie
counts as half a win each way (a soft target of 0.5: the likelihood of one win and one loss
with weight ½ each), or is dropped. A small L2 penalty keeps every strength finite when an
item won (or lost) every game, and fixes the additive constant the likelihood cannot see.

Ratings are strengths on the Elo scale, R = 400/ln 10 · θ + 1000, so that a gap of 400
points means 10:1 odds: P(a beats b) = 1 / (1 + 10^(−(R_a − R_b)/400)). The ratings are
shifted so that their mean is 1000, or so that an ``anchor`` item sits at exactly 1000.

Papers cited beside the lines:
- Bradley & Terry 1952, "Rank Analysis of Incomplete Block Designs: I. The Method of Paired
  Comparisons".
- Wilson 1927, "Probable Inference, the Law of Succession, and Statistical Inference".
- Efron & Tibshirani 1993, "An Introduction to the Bootstrap" (percentile intervals, ch. 13).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, log_expit, ndtri

__all__ = [
    "DEFAULT_L2",
    "ELO_BASE",
    "ELO_SCALE",
    "RatingError",
    "RatingIntervals",
    "Ratings",
    "WinRate",
    "bootstrap_ratings",
    "bradley_terry_fit",
    "comparisons_array",
    "elo_ratings",
    "pair_counts",
    "win_rate",
]

Ties = Literal["half", "drop"]
FloatArray = NDArray[np.float64]

# 400 / ln 10: one unit of strength θ (log-odds) in Elo points.
ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0
# The penalty λ‖θ‖² added to the negative log-likelihood (choix's ``alpha``): a Gaussian
# prior of variance 1/(2λ) = 500 on each strength, far weaker than any real data (it moves
# an estimate from a few dozen games by well under one Elo point), yet enough that an item
# that won all of its games gets a large finite strength instead of +∞.
DEFAULT_L2 = 1e-3
_MAX_NEWTON_STEPS = 100
_TOLERANCE = 1e-10


class RatingError(ValueError):
    """Comparisons that cannot be rated (an item id out of range, a score not 0, ½ or 1)."""


@dataclass(frozen=True)
class Ratings:
    """A Bradley-Terry fit of ``M`` items.

    ``strengths``: ``[M]`` θ in log-odds, shifted like the ratings (mean 0, or 0 at the
    anchor). ``ratings``: ``[M]`` Elo-scale ratings. ``games``: ``[M]`` how many
    comparisons each item took part in (after dropping ties, with ``ties="drop"``).
    ``comparisons``: how many comparisons the fit used.
    """

    strengths: FloatArray
    ratings: FloatArray
    games: NDArray[np.int64]
    comparisons: int


@dataclass(frozen=True)
class RatingIntervals:
    """Percentile-bootstrap confidence intervals of the ratings: ``low`` and ``high`` are
    ``[M]`` Elo-scale bounds, ``samples`` the ``[rounds, M]`` bootstrap ratings."""

    low: FloatArray
    high: FloatArray
    confidence: float
    rounds: int
    samples: FloatArray


@dataclass(frozen=True)
class WinRate:
    """``rate`` = (wins + ties/2) / games with its Wilson score interval ``[low, high]``.

    With no games, ``rate`` is ``None`` and the interval is the whole ``[0, 1]``.
    """

    wins: int
    ties: int
    losses: int
    rate: float | None
    low: float
    high: float

    @property
    def games(self) -> int:
        return self.wins + self.ties + self.losses


# --------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------


def comparisons_array(comparisons: ArrayLike, n_items: int) -> FloatArray:
    """The comparisons as a checked ``[N, 3]`` float array of rows ``(a, b, y)``.

    Raises :class:`RatingError` for an item outside ``[0, n_items)``, an item compared with
    itself, or a score other than 0, ½ or 1.
    """
    if n_items < 1:
        raise RatingError("there must be at least one item to rate")
    array = np.asarray(comparisons, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 3), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise RatingError(f"comparisons are rows (a, b, score); got shape {array.shape}")
    items = array[:, :2]
    if np.any(items != np.round(items)) or np.any(items < 0) or np.any(items >= n_items):
        raise RatingError(f"item ids must be integers in [0, {n_items})")
    if np.any(items[:, 0] == items[:, 1]):
        raise RatingError("an item cannot be compared with itself")
    if not np.all(np.isin(array[:, 2], (0.0, 0.5, 1.0))):
        raise RatingError("a score is 1 (a won), 0 (b won) or 0.5 (a tie)")
    return array


def _cells(array: FloatArray, ties: Ties) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
    """Distinct comparisons and how often each occurs: the likelihood's sufficient statistic.

    Rows are put in the canonical orientation ``a < b`` (``y`` flipped to ``1 − y``).
    Returns ``(pairs [K, 2], scores [K], counts [K])``.
    """
    if ties not in ("half", "drop"):
        raise RatingError(f"ties are 'half' or 'drop', not {ties!r}")
    if ties == "drop":
        array = array[array[:, 2] != 0.5]
    a = array[:, 0].astype(np.int64)
    b = array[:, 1].astype(np.int64)
    y = array[:, 2]
    flip = a > b
    low, high = np.where(flip, b, a), np.where(flip, a, b)
    score = np.where(flip, 1.0 - y, y)
    keys = np.stack([low, high, score * 2], axis=1)
    distinct, counts = np.unique(keys, axis=0, return_counts=True)
    return (
        distinct[:, :2].astype(np.int64),
        distinct[:, 2] / 2.0,
        counts.astype(np.float64),
    )


def _tables(
    pairs: NDArray[np.int64], scores: FloatArray, counts: FloatArray, n_items: int
) -> tuple[FloatArray, FloatArray]:
    """Per-round score and game tables from cell counts.

    ``counts`` is ``[K]`` or ``[R, K]`` (R bootstrap rounds). Returns ``S`` and ``N``, each
    ``[R, M, M]``: ``S[r, i, j]`` is i's total score against j (wins + ties/2) and
    ``N[r, i, j] = N[r, j, i]`` the games between them.
    """
    counts = np.atleast_2d(counts)
    rounds = counts.shape[0]
    wins = np.zeros((rounds, n_items, n_items))
    games = np.zeros((rounds, n_items, n_items))
    for k, (i, j) in enumerate(pairs):
        wins[:, i, j] += counts[:, k] * scores[k]
        wins[:, j, i] += counts[:, k] * (1.0 - scores[k])
        games[:, i, j] += counts[:, k]
        games[:, j, i] += counts[:, k]
    return wins, games


# --------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------


def _objective(theta: FloatArray, wins: FloatArray, l2: float) -> FloatArray:
    """Penalised negative log-likelihood per round, ``[R]`` for θ ``[R, M]``:

    L(θ) = −Σ_{i≠j} S_ij · log σ(θ_i − θ_j) + λ Σ_i θ_i²
    """
    diff = theta[:, :, None] - theta[:, None, :]
    return -np.sum(wins * log_expit(diff), axis=(1, 2)) + l2 * np.sum(theta**2, axis=1)


def _newton(wins: FloatArray, games: FloatArray, l2: float) -> FloatArray:
    """Minimise :func:`_objective` for every round at once: damped Newton, from θ = 0.

    With p_ij = σ(θ_i − θ_j):
        ∇_i  = Σ_j (N_ij p_ij − S_ij) + 2λ θ_i
        H_ii = Σ_j N_ij p_ij (1 − p_ij) + 2λ,   H_ij = −N_ij p_ij (1 − p_ij)
    H is positive definite for λ > 0, so the objective is strictly convex and the step
    halving (Armijo) makes every round converge from any start.
    """
    rounds, n_items, _ = wins.shape
    theta = np.zeros((rounds, n_items))
    eye = np.eye(n_items)
    value = _objective(theta, wins, l2)
    for _ in range(_MAX_NEWTON_STEPS):
        p = expit(theta[:, :, None] - theta[:, None, :])
        grad = np.sum(games * p - wins, axis=2) + 2 * l2 * theta
        curvature = games * p * (1 - p)
        hess = -curvature + eye * (curvature.sum(axis=2) + 2 * l2)[:, :, None]
        step = -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        slope = np.sum(grad * step, axis=1)  # < 0: a descent direction
        if np.max(-slope) < _TOLERANCE:
            break
        size = np.ones(rounds)
        pending = np.ones(rounds, dtype=bool)
        new_theta, new_value = theta.copy(), value.copy()
        for _ in range(60):
            trial = theta[pending] + size[pending, None] * step[pending]
            trial_value = _objective(trial, wins[pending], l2)
            accepted = trial_value <= value[pending] + 1e-4 * size[pending] * slope[pending]
            index = np.flatnonzero(pending)
            new_theta[index[accepted]] = trial[accepted]
            new_value[index[accepted]] = trial_value[accepted]
            pending[index[accepted]] = False
            size[pending] /= 2
            if not pending.any():
                break
        theta, value = new_theta, new_value
    return theta


def _shift(theta: FloatArray, anchor: int | None) -> FloatArray:
    """Strengths ``[R, M]`` shifted to mean 0 per round, or to 0 at the anchor item."""
    if anchor is None:
        return theta - theta.mean(axis=1, keepdims=True)
    return theta - theta[:, anchor : anchor + 1]


def elo_ratings(strengths: ArrayLike, *, anchor: int | None = None) -> FloatArray:
    """Elo-scale ratings of strengths ``[..., M]``: 400/ln 10 · (θ − shift) + 1000, where
    the shift makes the mean rating 1000 (or the anchor item's rating exactly 1000)."""
    theta = np.atleast_2d(np.asarray(strengths, dtype=np.float64))
    rated = ELO_SCALE * _shift(theta, anchor) + ELO_BASE
    return rated.reshape(np.shape(strengths))


def _check(n_items: int, l2: float, anchor: int | None) -> None:
    if not l2 > 0:
        raise RatingError("l2 must be > 0 (it keeps an item with only wins finite)")
    if anchor is not None and not 0 <= anchor < n_items:
        raise RatingError(f"the anchor must be an item in [0, {n_items})")


def bradley_terry_fit(
    comparisons: ArrayLike,
    n_items: int,
    *,
    ties: Ties = "half",
    l2: float = DEFAULT_L2,
    anchor: int | None = None,
) -> Ratings:
    """Maximum-likelihood (L2-penalised) Bradley-Terry strengths of ``n_items`` items.

    ``comparisons``: ``[N, 3]`` rows ``(a, b, y)``, ``y`` = a's score (1, ½ or 0).
    Minimises

        L(θ) = −Σ_n [y_n log σ(θ_a − θ_b) + (1 − y_n) log σ(θ_b − θ_a)] + λ‖θ‖²

    (logistic regression on the comparisons; ``ties="half"`` keeps y = ½, ``"drop"``
    leaves ties out). The same objective as ``choix.opt_pairwise(alpha=λ)`` on win/loss
    data. An item without games keeps θ = 0 (the prior's mean); ratings are on the Elo
    scale with mean 1000, or 1000 at ``anchor``.
    """
    _check(n_items, l2, anchor)
    array = comparisons_array(comparisons, n_items)
    pairs, scores, counts = _cells(array, ties)
    wins, games = _tables(pairs, scores, counts, n_items)
    theta = _shift(_newton(wins, games, l2), anchor)
    return Ratings(
        strengths=theta[0],
        ratings=ELO_SCALE * theta[0] + ELO_BASE,
        games=games[0].sum(axis=1).astype(np.int64),
        comparisons=int(counts.sum()),
    )


def bootstrap_ratings(
    comparisons: ArrayLike,
    n_items: int,
    *,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    ties: Ties = "half",
    l2: float = DEFAULT_L2,
    anchor: int | None = None,
) -> RatingIntervals:
    """Percentile-bootstrap confidence intervals of the Elo-scale ratings.

    Each round resamples the N comparisons with replacement and refits; the interval of
    item i is the (1 − c)/2 and (1 + c)/2 quantiles of its ``rounds`` ratings (Efron &
    Tibshirani 1993, §13.3). Resampling N rows with replacement is drawing the counts of
    the K distinct rows from Multinomial(N, counts / N), so every round is a fit on a
    ``[M, M]`` table and all rounds are solved together. Deterministic for a ``seed``.
    With no comparisons every interval is the single point of the prior (1000).
    """
    _check(n_items, l2, anchor)
    if rounds < 1:
        raise RatingError("rounds must be >= 1")
    if not 0 < confidence < 1:
        raise RatingError("confidence must be in (0, 1)")
    array = comparisons_array(comparisons, n_items)
    pairs, scores, counts = _cells(array, ties)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    if total:
        drawn = rng.multinomial(total, counts / total, size=rounds).astype(np.float64)
    else:
        drawn = np.zeros((rounds, 0))
    wins, games = _tables(pairs, scores, drawn, n_items)
    samples = ELO_SCALE * _shift(_newton(wins, games, l2), anchor) + ELO_BASE
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
    return RatingIntervals(
        low=low, high=high, confidence=confidence, rounds=rounds, samples=samples
    )


# --------------------------------------------------------------------------------------
# Win-rates
# --------------------------------------------------------------------------------------


def win_rate(wins: int, ties: int, losses: int, *, confidence: float = 0.95) -> WinRate:
    """Win-rate (ties count half) with its Wilson score interval (Wilson 1927).

    With n games and p̂ = (wins + ties/2) / n, z the normal quantile of (1 + c)/2:

        centre = (p̂ + z²/2n) / (1 + z²/n)
        half   = z / (1 + z²/n) · √(p̂(1 − p̂)/n + z²/4n²)

    Unlike p̂ ± z√(p̂(1−p̂)/n), the interval stays inside [0, 1] and is not empty at 10-0.
    """
    if min(wins, ties, losses) < 0:
        raise RatingError("counts cannot be negative")
    if not 0 < confidence < 1:
        raise RatingError("confidence must be in (0, 1)")
    n = wins + ties + losses
    if n == 0:
        return WinRate(wins, ties, losses, rate=None, low=0.0, high=1.0)
    p = (wins + ties / 2) / n
    z = float(ndtri((1 + confidence) / 2))
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At p̂ = 0 or 1 a bound is exactly 0 or 1; say so rather than 0.9999999999999999.
    low = 0.0 if p == 0 else max(0.0, centre - half)
    high = 1.0 if p == 1 else min(1.0, centre + half)
    return WinRate(wins, ties, losses, rate=p, low=low, high=high)


def pair_counts(comparisons: ArrayLike, n_items: int) -> NDArray[np.int64]:
    """``[M, M, 3]`` counts: ``[i, j] = (wins, ties, losses)`` of i against j (every
    comparison counted once each way)."""
    array = comparisons_array(comparisons, n_items)
    table = np.zeros((n_items, n_items, 3), dtype=np.int64)
    a, b = array[:, 0].astype(np.int64), array[:, 1].astype(np.int64)
    outcome = np.where(array[:, 2] == 1.0, 0, np.where(array[:, 2] == 0.5, 1, 2))
    np.add.at(table, (a, b, outcome), 1)
    np.add.at(table, (b, a, 2 - outcome), 1)
    return table
