"""The reward-hacking check on an RL run's curves (``training.core.hacking``)."""

from __future__ import annotations

from training.core.hacking import HackingCheck, reward_hacking_check

STEPS = list(range(1, 21))
# 20 rollouts: baseline = the first 4 (20%), recent = the last 4.
FLAT_SCORE = [0.0, 0.2, -0.2, 0.0] * 5
RISING_SCORE = [0.0, 0.2, -0.2, 0.0] + [0.5 * i for i in range(1, 17)]
STEADY_LENGTH = [10.0, 11.0, 9.0, 10.0] * 5
STEADY_KL = [0.0, 0.5, 1.0, 1.5] + [2.0] * 16


def _check(score: list[float], kl: list[float], length: list[float]) -> HackingCheck:
    return reward_hacking_check(
        STEPS, {"score": score, "kl": kl, "response_length": length}, kl_target=6.0
    )


def test_it_warns_when_the_score_rises_while_the_length_leaves_its_range() -> None:
    # Baseline length: mean 10, sd 0.71 -> tolerance max(2.1, 2.5, 2) = 2.5: 7.5..12.5.
    length = STEADY_LENGTH[:12] + [12.0, 13.0, 14.0, 20.0, 24.0, 28.0, 31.0, 32.0]

    check = _check(RISING_SCORE, STEADY_KL, length)

    assert check.ready and check.warning
    assert check.reasons == ("length",)
    assert check.length_range == (7.5, 12.5)
    # Windows of 4: steps 12-15 average (10 + 12 + 13 + 14) / 4 = 12.25, in range;
    # steps 13-16 (12 + 13 + 14 + 20) / 4 = 14.75, out, while their score (4.5..6) is up.
    assert check.first_step == 16
    assert check.recent_length == (24.0 + 28.0 + 31.0 + 32.0) / 4
    assert check.recent_beyond_reference is None  # not reported by this run
    assert "length" in check.messages[0] and "score rose" in check.messages[0]


def test_it_warns_when_the_score_rises_while_the_kl_passes_twice_its_target() -> None:
    kl = STEADY_KL[:14] + [8.0, 10.0, 13.0, 15.0, 16.0, 18.0]

    check = _check(RISING_SCORE, kl, STEADY_LENGTH)

    assert check.warning and check.reasons == ("kl",)
    assert check.kl_limit == 12.0
    assert check.recent_kl == (13.0 + 15.0 + 16.0 + 18.0) / 4


def test_it_does_not_warn_while_length_and_kl_stay_in_range() -> None:
    check = _check(RISING_SCORE, STEADY_KL, STEADY_LENGTH)

    assert check.ready and not check.warning and check.first_step is None


def test_it_shows_the_recent_share_of_scores_beyond_the_reference() -> None:
    beyond = [0.0] * 16 + [0.25, 0.5, None, 0.75]
    check = reward_hacking_check(
        STEPS,
        {
            "score": RISING_SCORE,
            "kl": STEADY_KL,
            "response_length": STEADY_LENGTH,
            "beyond_reference": beyond,
        },
        kl_target=6.0,
    )

    # The last 4 known values: 0.0, 0.25, 0.5, 0.75.
    assert check.recent_beyond_reference == 0.375


def test_it_does_not_warn_when_the_score_does_not_rise() -> None:
    length = STEADY_LENGTH[:12] + [30.0] * 8

    check = _check(FLAT_SCORE, [20.0] * 20, length)

    assert check.ready and not check.warning


def test_it_waits_for_a_baseline_and_a_recent_window() -> None:
    check = reward_hacking_check(
        [1, 2, 3, 4, 5],
        {"score": [0, 1, 2, 3, 4], "kl": [0, 50, 50, 50, 50], "response_length": [1] * 5},
        kl_target=6.0,
    )

    assert not check.ready and not check.warning


def test_it_skips_steps_without_all_three_metrics() -> None:
    # The held-out evaluation adds a step of its own in some runs; a None is not a zero.
    score = [*RISING_SCORE, None]
    check = reward_hacking_check(
        [*STEPS, 21],
        {"score": score, "kl": [*STEADY_KL, 0.0], "response_length": [*STEADY_LENGTH, None]},
        kl_target=6.0,
    )

    assert check.ready and not check.warning
