"""Agreement between annotators: pure functions over preference labels.

A *unit* is one pair of completions in one task; each annotator who ranked the task gives
it a label: ``1`` (the first completion is preferred), ``-1`` (the second) or ``0`` (a
tie). On a single-answer task the unit is the answer, labeled ``1`` (good) or ``-1``
(bad). Django-free.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

Label = int
U = TypeVar("U", bound=Hashable)  # a unit
A = TypeVar("A", bound=Hashable)  # an annotator
B = TypeVar("B", bound=Hashable)  # a bucket (a day, say)
T = TypeVar("T", bound=Hashable)  # a task
# unit -> {annotator: label}
Units = Mapping[U, Mapping[A, Label]]


def preference_labels(order: Sequence[Sequence[int]]) -> dict[tuple[int, int], Label]:
    """Labels for every pair (a, b) with a < b implied by a best-first ranking with ties."""
    rank = {item: i for i, group in enumerate(order) for item in group}
    labels: dict[tuple[int, int], Label] = {}
    for a, b in itertools.combinations(sorted(rank), 2):
        labels[(a, b)] = 0 if rank[a] == rank[b] else (1 if rank[a] < rank[b] else -1)
    return labels


# The unit key of a single answer's verdict within its task (beside pairs of ids).
VERDICT_UNIT = "verdict"
VERDICT_LABELS = {"good": 1, "bad": -1}


def label_units(order: Sequence[Sequence[int]], verdict: str = "") -> dict[Hashable, Label]:
    """The units one label gives its task: the verdict on a single answer (``"good"`` 1,
    ``"bad"`` -1) as one unit, else the pairs its best-first ranking implies."""
    if verdict:
        return {VERDICT_UNIT: VERDICT_LABELS[verdict]}
    return dict(preference_labels(order))


def pairwise_agreement(units: Units[U, A]) -> float | None:
    """Share of annotator pairs that gave a unit the same label, over all units.

    None when no unit has two labels.
    """
    agree = total = 0
    for labels in units.values():
        for x, y in itertools.combinations(labels.values(), 2):
            total += 1
            agree += x == y
    return agree / total if total else None


def _coincidences(units: Units[U, A]) -> defaultdict[tuple[Label, Label], float]:
    """The coincidence matrix o_ck: each ordered pair of values within a unit, weighted
    1 / (m_u - 1); units with fewer than two labels are not pairable and add nothing."""
    coincidence: defaultdict[tuple[Label, Label], float] = defaultdict(float)
    for labels in units.values():
        values = list(labels.values())
        m = len(values)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            coincidence[(values[i], values[j])] += 1.0 / (m - 1)
    return coincidence


def _alpha(units: Units[U, A], metric: str) -> float | None:
    """alpha = 1 - D_o / D_e = 1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck, where d_ck is
    the squared difference of the ``metric`` (Krippendorff 2011, sections C and E)."""
    coincidence = _coincidences(units)
    if not coincidence:
        return None
    n_c: defaultdict[Label, float] = defaultdict(float)
    for (c, _k), weight in coincidence.items():
        n_c[c] += weight
    n = sum(n_c.values())
    if metric == "nominal":

        def delta(c: Label, k: Label) -> float:
            return 0.0 if c == k else 1.0

    else:  # ordinal: the values' ranks, with the marginals of the values between them
        values = sorted(n_c)
        rank = {v: i for i, v in enumerate(values)}
        cumulative = list(itertools.accumulate(n_c[v] for v in values))

        def delta(c: Label, k: Label) -> float:
            low, high = sorted((rank[c], rank[k]))
            between = cumulative[high] - (cumulative[low - 1] if low else 0.0)
            return (between - (n_c[c] + n_c[k]) / 2) ** 2 if c != k else 0.0

    observed = sum(w * delta(c, k) for (c, k), w in coincidence.items())
    expected = sum(n_c[c] * n_c[k] * delta(c, k) for c in n_c for k in n_c) / (n - 1)
    if expected == 0:
        return None
    return 1.0 - observed / expected


def krippendorff_alpha_nominal(units: Units[U, A]) -> float | None:
    """Krippendorff's alpha for nominal data (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability", section C): 1 - D_o / D_e from the coincidence matrix.

    Units with fewer than two labels are not pairable and are ignored. None when nothing
    is pairable or when every label is the same value (no variation to agree on).
    """
    return _alpha(units, "nominal")


def krippendorff_alpha_ordinal(units: Units[U, A]) -> float | None:
    """Krippendorff's alpha for ordinal data (Krippendorff 2011, section E.3), for scores
    such as 1-7: the distance between two values counts the labels whose values lie between
    them, ``(sum_{g=c..k} n_g - (n_c + n_k) / 2)^2``. None as for the nominal alpha."""
    return _alpha(units, "ordinal")


def agreement_with_majority(units: Units[U, A]) -> dict[A, tuple[int, int]]:
    """For each annotator: (agreeing, counted) against the strict majority of the *other*
    annotators on each unit. Units where the others have no strict majority don't count."""
    return {who: counts for (who, _), counts in agreement_with_majority_by(units).items()}


def agreement_with_majority_by(
    units: Units[U, A], bucket_of: Mapping[tuple[U, A], B] | None = None
) -> dict[tuple[A, B | None], tuple[int, int]]:
    """As :func:`agreement_with_majority`, split by bucket: (annotator, bucket) -> (agreeing,
    counted), where ``bucket_of[(unit, annotator)]`` says which bucket (a day, say) that
    annotator's label on that unit falls in; without ``bucket_of``, one bucket (None)."""
    result: dict[tuple[A, B | None], list[int]] = defaultdict(lambda: [0, 0])
    for unit, labels in units.items():
        for annotator, label in labels.items():
            others = Counter(v for who, v in labels.items() if who != annotator)
            if not others:
                continue
            (top, count), *rest = others.most_common()
            if rest and rest[0][1] == count:
                continue
            key = (annotator, bucket_of[(unit, annotator)] if bucket_of is not None else None)
            result[key][1] += 1
            result[key][0] += label == top
    return {key: (agree, total) for key, (agree, total) in result.items()}


def gold_accuracy(
    gold: Mapping[T, Sequence[Sequence[int]]],
    rankings: Sequence[tuple[A, T, Sequence[Sequence[int]]]],
) -> dict[A, tuple[int, int]]:
    """For each annotator: (pairs matching the gold order, pairs judged) on gold tasks.

    ``gold`` maps task -> gold order; ``rankings`` holds (annotator, task, order).
    """
    result: dict[A, list[int]] = defaultdict(lambda: [0, 0])
    gold_labels = {task: preference_labels(order) for task, order in gold.items()}
    for annotator, task, order in rankings:
        expected = gold_labels.get(task)
        if expected is None:
            continue
        for pair, label in preference_labels(order).items():
            if pair in expected:
                result[annotator][1] += 1
                result[annotator][0] += expected[pair] == label
    return {who: (ok, total) for who, (ok, total) in result.items()}


# --- reward models ----------------------------------------------------------------------------


def reward_gap(rewards: Sequence[float]) -> float | None:
    """How sure a reward model is about a task: the smallest gap between any two of its
    completions' rewards (|r_a - r_b| for a pair). None with fewer than two rewards."""
    if len(rewards) < 2:
        return None
    ordered = sorted(rewards)
    return min(b - a for a, b in itertools.pairwise(ordered))


def order_by_reward(rewards: Mapping[int, float]) -> list[list[int]]:
    """A best-first ranking with ties from completion id -> reward: highest reward first,
    equal rewards tied (ids ascending within a group)."""
    groups: dict[float, list[int]] = defaultdict(list)
    for completion_id, reward in rewards.items():
        groups[reward].append(completion_id)
    return [sorted(groups[r]) for r in sorted(groups, reverse=True)]


def reward_agreement(
    comparisons: Iterable[tuple[Hashable, float, float]],
) -> dict[Hashable, tuple[int, int]]:
    """For each annotator: (comparisons whose chosen completion has the higher reward,
    comparisons counted), from (annotator, reward of chosen, reward of rejected) of non-tie
    comparisons. Equal rewards count as a disagreement: the model did not prefer the chosen."""
    result: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for annotator, chosen, rejected in comparisons:
        result[annotator][1] += 1
        result[annotator][0] += chosen > rejected
    return {who: (agree, total) for who, (agree, total) in result.items()}
