"""Bradley-Terry fits, bootstrap intervals and Wilson win-rates (training/core/ratings.py)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import choix
import numpy as np
import pytest

from training.core.ratings import (
    ELO_SCALE,
    RatingError,
    bootstrap_ratings,
    bradley_terry_fit,
    elo_ratings,
    pair_counts,
    win_rate,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def simulate(strengths: np.ndarray, games: int, *, seed: int = 0, tie_band: float = 0.0):  # type: ignore[no-untyped-def]
    """``games`` comparisons between random pairs under Bradley-Terry with ``strengths``.

    With ``tie_band`` > 0, an outcome whose uniform draw falls within the band around the
    win probability is a tie (symmetric, so it leaves the strengths' ordering intact).
    """
    rng = np.random.default_rng(seed)
    n = len(strengths)
    rows = []
    for _ in range(games):
        a, b = rng.choice(n, size=2, replace=False)
        p = 1 / (1 + math.exp(-(strengths[a] - strengths[b])))
        u = rng.random()
        if tie_band and abs(u - p) < tie_band:
            y = 0.5
        else:
            y = 1.0 if u < p else 0.0
        rows.append((a, b, y))
    return np.array(rows, dtype=np.float64)


def centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean()


TRUE = np.array([0.0, 0.6, 1.2, -0.8, -1.0])


# --- the fit --------------------------------------------------------------------------------


def test_it_recovers_known_strengths_from_simulated_comparisons() -> None:
    rows = simulate(TRUE, 20_000, seed=1)
    fit = bradley_terry_fit(rows, len(TRUE))
    np.testing.assert_allclose(fit.strengths, centred(TRUE), atol=0.08)
    assert list(np.argsort(-fit.ratings)) == list(np.argsort(-TRUE))
    assert fit.comparisons == 20_000 and fit.games.sum() == 2 * 20_000


def test_it_matches_choix_on_the_same_data() -> None:
    # An independent maximum-likelihood implementation with the same penalty alpha·‖θ‖².
    rows = simulate(TRUE, 600, seed=2)
    data = [(int(a), int(b)) if y == 1 else (int(b), int(a)) for a, b, y in rows]
    for l2 in (1e-3, 0.5):
        reference = choix.opt_pairwise(len(TRUE), data, alpha=l2, tol=1e-10)
        fit = bradley_terry_fit(rows, len(TRUE), l2=l2)
        np.testing.assert_allclose(fit.strengths, centred(reference), atol=1e-5)


def test_it_counts_a_tie_as_half_a_win_each_way() -> None:
    # Ties as y = 0.5 have the likelihood of a win and a loss at weight ½ each: choix on the
    # data with every decided game twice and every tie once each way, at twice the penalty.
    rows = simulate(TRUE, 800, seed=3, tie_band=0.15)
    assert (rows[:, 2] == 0.5).sum() > 50
    doubled = []
    for a, b, y in rows:
        a, b = int(a), int(b)
        if y == 0.5:
            doubled += [(a, b), (b, a)]
        else:
            doubled += [(a, b), (a, b)] if y == 1 else [(b, a), (b, a)]
    reference = choix.opt_pairwise(len(TRUE), doubled, alpha=2e-3, tol=1e-10)
    fit = bradley_terry_fit(rows, len(TRUE), ties="half", l2=1e-3)
    np.testing.assert_allclose(fit.strengths, centred(reference), atol=1e-5)
    dropped = bradley_terry_fit(rows, len(TRUE), ties="drop")
    assert dropped.comparisons == int((rows[:, 2] != 0.5).sum())


def test_it_keeps_a_model_with_only_wins_finite() -> None:
    rows = [(0, 1, 1.0)] * 30 + [(2, 1, 1.0)] * 5 + [(0, 2, 1.0)] * 5
    fit = bradley_terry_fit(rows, 3)
    assert np.all(np.isfinite(fit.ratings))
    assert fit.ratings[0] > fit.ratings[2] > fit.ratings[1]
    intervals = bootstrap_ratings(rows, 3, rounds=200)
    assert np.all(np.isfinite(intervals.low)) and np.all(np.isfinite(intervals.high))


def test_it_puts_the_mean_rating_at_1000_on_the_elo_scale() -> None:
    rows = simulate(TRUE, 2000, seed=4)
    fit = bradley_terry_fit(rows, len(TRUE))
    assert fit.ratings.mean() == pytest.approx(1000.0)
    # 400 points are 10:1 odds.
    gap = fit.ratings[2] - fit.ratings[3]
    assert gap == pytest.approx(ELO_SCALE * (fit.strengths[2] - fit.strengths[3]))
    assert 1 / (1 + 10 ** (-gap / 400)) == pytest.approx(
        1 / (1 + math.exp(-(fit.strengths[2] - fit.strengths[3])))
    )


def test_it_anchors_the_ratings_on_a_reference_model() -> None:
    rows = simulate(TRUE, 2000, seed=5)
    free = bradley_terry_fit(rows, len(TRUE))
    anchored = bradley_terry_fit(rows, len(TRUE), anchor=3)
    assert anchored.ratings[3] == pytest.approx(1000.0)
    np.testing.assert_allclose(np.diff(anchored.ratings), np.diff(free.ratings))
    np.testing.assert_allclose(elo_ratings(free.strengths, anchor=3), anchored.ratings)


def test_it_leaves_a_model_without_games_at_the_prior() -> None:
    fit = bradley_terry_fit([(0, 1, 1.0), (1, 0, 1.0), (0, 1, 0.5)], 3)
    assert fit.games.tolist() == [3, 3, 0]
    assert fit.strengths[2] == pytest.approx(0.0, abs=1e-9)
    empty = bradley_terry_fit(np.zeros((0, 3)), 2)
    assert empty.ratings.tolist() == [1000.0, 1000.0] and empty.comparisons == 0


@pytest.mark.parametrize(
    "rows, message",
    [
        ([(0, 3, 1.0)], "item ids"),
        ([(1, 1, 1.0)], "itself"),
        ([(0, 1, 0.7)], "score"),
        ([(0, 1)], "rows"),
    ],
)
def test_it_refuses_bad_comparisons(rows: list[tuple[float, ...]], message: str) -> None:
    with pytest.raises(RatingError, match=message):
        bradley_terry_fit(rows, 3)


def test_it_refuses_no_regularisation() -> None:
    with pytest.raises(RatingError, match="l2"):
        bradley_terry_fit([(0, 1, 1.0)], 2, l2=0.0)


# --- the bootstrap --------------------------------------------------------------------------


def test_it_gives_bootstrap_intervals_that_cover_the_truth_about_95_percent() -> None:
    truth = ELO_SCALE * centred(TRUE) + 1000
    covered = []
    for seed in range(40):
        intervals = bootstrap_ratings(simulate(TRUE, 300, seed=100 + seed), len(TRUE), rounds=200)
        covered.append((intervals.low <= truth) & (truth <= intervals.high))
    coverage = np.mean(covered)
    assert 0.88 <= coverage <= 1.0, coverage


def test_it_gives_bootstrap_intervals_that_shrink_with_more_data() -> None:
    small = bootstrap_ratings(simulate(TRUE, 500, seed=6), len(TRUE), rounds=400, seed=1)
    large = bootstrap_ratings(simulate(TRUE, 8000, seed=7), len(TRUE), rounds=400, seed=1)
    assert np.all(small.low < small.high) and np.all(large.low < large.high)
    # About 1/√16 = 1/4 of the width with 16 times the data.
    assert np.all(large.high - large.low < (small.high - small.low) / 2)
    assert small.samples.shape == (400, len(TRUE))


def test_it_bootstraps_deterministically_for_a_seed() -> None:
    rows = simulate(TRUE, 300, seed=8)
    first = bootstrap_ratings(rows, len(TRUE), rounds=100, seed=3)
    again = bootstrap_ratings(rows, len(TRUE), rounds=100, seed=3)
    other = bootstrap_ratings(rows, len(TRUE), rounds=100, seed=4)
    np.testing.assert_array_equal(first.low, again.low)
    assert not np.array_equal(first.samples, other.samples)


def test_it_bootstraps_each_round_as_a_full_refit() -> None:
    # Round r's ratings are the fit on the comparisons it drew: check one against a direct fit.
    rows = np.array([(0, 1, 1.0)] * 6 + [(1, 2, 1.0)] * 4 + [(2, 0, 0.5)] * 3 + [(1, 0, 1.0)] * 2)
    intervals = bootstrap_ratings(rows, 3, rounds=1, seed=11)
    rng = np.random.default_rng(11)
    # The same draw the bootstrap made: counts of the distinct rows (sorted canonically).
    distinct = [(0, 1, 0.0), (0, 1, 1.0), (0, 2, 0.5), (1, 2, 1.0)]
    counts = rng.multinomial(len(rows), np.array([2, 6, 3, 4]) / len(rows))
    resampled = [row for row, c in zip(distinct, counts, strict=True) for _ in range(c)]
    np.testing.assert_allclose(intervals.samples[0], bradley_terry_fit(resampled, 3).ratings)


# --- win-rates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wins, ties, losses, rate, low, high",
    [
        # Hand values of the Wilson score interval, z = 1.959964.
        (8, 0, 2, 0.8, 0.4901625, 0.9433178),
        (7, 2, 1, 0.8, 0.4901625, 0.9433178),  # a tie counts half
        (10, 0, 0, 1.0, 0.7224672, 1.0),
        (0, 0, 5, 0.0, 0.0, 0.4344825),
        (50, 0, 50, 0.5, 0.4038315, 0.5961685),
    ],
)
def test_it_gives_the_wilson_interval_on_known_counts(
    wins: int, ties: int, losses: int, rate: float, low: float, high: float
) -> None:
    result = win_rate(wins, ties, losses)
    assert result.rate == pytest.approx(rate)
    assert result.low == pytest.approx(low, abs=1e-6)
    assert result.high == pytest.approx(high, abs=1e-6)
    assert result.games == wins + ties + losses


def test_it_gives_no_rate_without_games() -> None:
    result = win_rate(0, 0, 0)
    assert result.rate is None and (result.low, result.high) == (0.0, 1.0)


def test_it_counts_pairs_from_both_sides() -> None:
    table = pair_counts([(0, 1, 1.0), (1, 0, 1.0), (0, 1, 0.5), (2, 0, 0.0)], 3)
    assert table[0, 1].tolist() == [1, 1, 1]
    assert table[1, 0].tolist() == [1, 1, 1]
    assert table[0, 2].tolist() == [1, 0, 0] and table[2, 0].tolist() == [0, 0, 1]


def test_it_imports_without_django_or_torch() -> None:
    check = (
        "import sys, training.core.ratings; "
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')]; "
        "assert 'torch' not in sys.modules; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
