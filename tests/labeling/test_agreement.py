from __future__ import annotations

import pytest

from labeling import agreement


def test_it_derives_pair_labels_from_a_ranking_with_ties() -> None:
    assert agreement.preference_labels([[3], [1, 2]]) == {(1, 2): 0, (1, 3): -1, (2, 3): -1}


def test_it_counts_pairwise_agreement() -> None:
    units = {"u1": {"a": 1, "b": 1}, "u2": {"a": 1, "b": -1, "c": 1}, "u3": {"a": 0}}
    # u1: 1 agreeing pair of 1; u2: (a,b) no, (a,c) yes, (b,c) no.
    assert agreement.pairwise_agreement(units) == pytest.approx(2 / 4)
    assert agreement.pairwise_agreement({"u": {"a": 1}}) is None


def test_it_computes_krippendorffs_alpha_by_hand() -> None:
    # Two coders, four units: values (1,1), (1,1), (-1,-1), (1,-1).
    units = {1: {"x": 1, "y": 1}, 2: {"x": 1, "y": 1}, 3: {"x": -1, "y": -1}, 4: {"x": 1, "y": -1}}
    # Coincidences: o(1,1)=4, o(-1,-1)=2, o(1,-1)=o(-1,1)=1; n_1=5, n_-1=3, n=8.
    # D_o = 2; D_e = (5*3 + 3*5) / 7 = 30/7; alpha = 1 - 2 / (30/7) = 1 - 14/30.
    assert agreement.krippendorff_alpha_nominal(units) == pytest.approx(1 - 14 / 30)


def test_it_gives_alpha_one_for_perfect_agreement_and_none_without_variation() -> None:
    assert agreement.krippendorff_alpha_nominal({1: {"x": 1, "y": 1}, 2: {"x": -1, "y": -1}}) == 1.0
    assert agreement.krippendorff_alpha_nominal({1: {"x": 1, "y": 1}}) is None
    assert agreement.krippendorff_alpha_nominal({1: {"x": 1}}) is None


def test_it_scores_each_annotator_against_the_others_majority() -> None:
    units = {1: {"a": 1, "b": 1, "c": -1}, 2: {"a": 1, "b": -1, "c": -1}}
    result = agreement.agreement_with_majority(units)
    # unit 1: a vs {b:1,c:-1} tie -> not counted; b same; c vs {1,1} -> disagrees.
    # unit 2: a vs {-1,-1} -> disagrees; b vs {1,-1} not counted; c vs {1,-1} not counted.
    assert result["c"] == (0, 1) and result["a"] == (0, 1) and "b" not in result


def test_it_measures_gold_accuracy() -> None:
    gold = {"t1": [[1], [2], [3]]}
    rankings = [
        ("alice", "t1", [[1], [2], [3]]),
        ("bob", "t1", [[3], [2], [1]]),
        ("bob", "t9", [[1], [2]]),
    ]
    assert agreement.gold_accuracy(gold, rankings) == {"alice": (3, 3), "bob": (0, 3)}


def test_hourly_series_fills_gaps_and_pads_an_empty_hour_each_side() -> None:
    from labeling.selectors import hourly_series

    h = 1_800_000_000 // 3600 * 3600
    assert hourly_series({}) == []
    assert hourly_series({h: 5}) == [(h - 3600, 0), (h, 5), (h + 3600, 0)]
    assert hourly_series({h: 2, h + 3 * 3600: 1}) == [
        (h - 3600, 0),
        (h, 2),
        (h + 3600, 0),
        (h + 7200, 0),
        (h + 10800, 1),
        (h + 14400, 0),
    ]
    # Months apart: the gaps stay unfilled rather than thousands of empty bars.
    far = h + 24 * 3600 * 100
    assert hourly_series({h: 1, far: 1}) == [(h - 3600, 0), (h, 1), (far, 1), (far + 3600, 0)]


def test_agreement_with_the_majority_splits_by_bucket() -> None:
    from labeling.agreement import agreement_with_majority_by

    # Unit u1 on day 1, u2 on day 2; a, b and c label both; c is with the others on day 1 only.
    units = {"u1": {"a": 1, "b": 1, "c": 1}, "u2": {"a": 1, "b": 1, "c": -1}}
    days = {(u, who): ("d1" if u == "u1" else "d2") for u in units for who in units[u]}
    result = agreement_with_majority_by(units, days)
    assert result[("c", "d1")] == (1, 1) and result[("c", "d2")] == (0, 1)
    # On u2, a's others are b (1) and c (-1): no strict majority, so it does not count.
    assert result[("a", "d1")] == (1, 1) and ("a", "d2") not in result


def test_it_computes_ordinal_alpha_by_hand() -> None:
    # Coincidences o_11 = 2, o_23 = o_32 = 1, o_33 = 2; n_1 = 2, n_2 = 1, n_3 = 3, n = 6.
    # d_12 = (2 + 1 - 1.5)^2 = 2.25, d_23 = (1 + 3 - 2)^2 = 4, d_13 = (6 - 2.5)^2 = 12.25.
    # D_o sum = 2 * 4 = 8; D_e sum = 2 * (2 * 2.25 + 3 * 4 + 6 * 12.25) = 180.
    units = {"u1": {"a": 1, "b": 1}, "u2": {"a": 2, "b": 3}, "u3": {"a": 3, "b": 3}}
    assert agreement.krippendorff_alpha_ordinal(units) == pytest.approx(1 - 5 * 8 / 180)
    # Nominal counts the 2-vs-3 disagreement in full: 1 - 5 * 2 / 22.
    assert agreement.krippendorff_alpha_nominal(units) == pytest.approx(1 - 5 * 2 / 22)


def test_its_ordinal_alpha_equals_the_nominal_one_on_two_values() -> None:
    units = {1: {"a": 1, "b": 1, "c": 7}, 2: {"a": 7, "b": 7}, 3: {"a": 1, "b": 7}}
    assert agreement.krippendorff_alpha_ordinal(units) == pytest.approx(
        agreement.krippendorff_alpha_nominal(units)
    )


def test_it_labels_a_verdict_as_one_unit() -> None:
    assert agreement.label_units([[5]], "good") == {agreement.VERDICT_UNIT: 1}
    assert agreement.label_units([[5]], "bad") == {agreement.VERDICT_UNIT: -1}
    assert agreement.label_units([[5], [3]]) == {(3, 5): -1}
    units = {1: {"a": 1, "b": 1}, 2: {"a": -1, "b": 1}}
    assert agreement.krippendorff_alpha_nominal(units) == pytest.approx(0.0)
