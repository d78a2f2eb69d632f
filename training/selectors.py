"""Reads for the training app: runs, their curves, reward-model scores, evaluation results
and the rounds timeline."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from config.roles import user_is_researcher
from generation.models import PolicyModel
from labeling import selectors as labeling_selectors
from labeling.hooks import ReferenceScores
from labeling.models import AI_LABELER_GROUP, Comparison, LabelingQueue, TaskCompletion
from training.core import ratings
from training.core.configs import RLConfig
from training.core.hacking import HackingCheck, reward_hacking_check
from training.core.ratings import WinRate
from training.models import (
    CompletionReward,
    ConstitutionLabeler,
    Evaluation,
    EvaluationEntry,
    PrincipleSet,
    QueueAssistance,
    RewardScoring,
    Round,
    TrainingMetric,
    TrainingRun,
)

Curves = dict[str, Any]


def training_run_list(*, user: User | AnonymousUser) -> QuerySet[TrainingRun]:
    """Every run for researchers and admins; nothing for anyone else (annotators label blind)."""
    if not user_is_researcher(user):
        return TrainingRun.objects.none()
    return TrainingRun.objects.select_related(
        "base_model", "snapshot", "reward_run", "output_model", "created_by"
    )


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _curves(points: Iterable[tuple[int, dict[str, Any]]]) -> Curves:
    """Points (step, values), in step then write order, as aligned series.

    A step reported twice (a resumed attempt redoing it) keeps the later values.
    """
    by_step: dict[int, dict[str, Any]] = {}
    names: dict[str, None] = {}
    for step, values in points:
        by_step.setdefault(step, {}).update(values or {})
        names.update(dict.fromkeys(values or {}))
    steps = sorted(by_step)
    return {
        "steps": steps,
        "metrics": {name: [_finite(by_step[s].get(name)) for s in steps] for name in names},
    }


def training_run_curves(*, run: TrainingRun, after_step: int = -1) -> Curves:
    """``{"steps": [...], "metrics": {name: [value or None per step]}}`` after ``after_step``.

    JSON-safe: a missing, NaN or infinite value is None.
    """
    points = (
        TrainingMetric.objects.filter(run=run, step__gt=after_step)
        .order_by("step", "id")
        .values_list("step", "values")
    )
    return _curves(points)


def training_runs_compare(*, runs: Iterable[TrainingRun]) -> dict[int, Curves]:
    """Each run's curves (as :func:`training_run_curves`), keyed by run id, in one query."""
    ids = [run.pk for run in runs]
    points: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    rows = (
        TrainingMetric.objects.filter(run_id__in=ids)
        .order_by("run_id", "step", "id")
        .values_list("run_id", "step", "values")
    )
    for run_id, step, values in rows:
        points[run_id].append((step, values))
    return {run_id: _curves(points[run_id]) for run_id in ids}


def training_run_hacking_check(*, run: TrainingRun) -> HackingCheck | None:
    """The reward-hacking check (:func:`training.core.hacking.reward_hacking_check`) on
    an RL run's curves; None for other kinds."""
    if run.kind not in TrainingRun.RL_KINDS:
        return None
    curves = training_run_curves(run=run)
    kl_target = _finite((run.config or {}).get("kl_target")) or RLConfig.kl_target
    return reward_hacking_check(curves["steps"], curves["metrics"], kl_target=kl_target)


def reward_run_heldout_accuracy(*, run: TrainingRun) -> float | None:
    """How often a reward run's model preferred the chosen answer on its held-out pairs."""
    return _finite((run.eval_metrics or {}).get("eval/rewards/accuracies"))


def reward_run_heldout_interval(*, run: TrainingRun) -> WinRate | None:
    """The held-out accuracy as a rate over the snapshot's held-out pairs, with its 95%
    Wilson interval: how far 20 pairs can tell a reward model from a coin. Exact when each
    prompt has one pair (the HH demo); with several, the accuracy is a mean over prompts and
    the count is rounded."""
    accuracy = reward_run_heldout_accuracy(run=run)
    pairs = run.snapshot.eval_count
    if accuracy is None or not pairs:
        return None
    right = min(pairs, max(0, round(accuracy * pairs)))
    return ratings.win_rate(right, 0, pairs - right)


def reward_runs_finished() -> QuerySet[TrainingRun]:
    """Succeeded reward-model runs with a model folder: the choices for PPO, GRPO and scoring."""
    return (
        TrainingRun.objects.filter(
            kind=TrainingRun.Kind.REWARD, status=TrainingRun.Status.SUCCEEDED
        )
        .exclude(final_dir="")
        .select_related("base_model", "snapshot")
    )


def reward_scoring_list(*, user: User | AnonymousUser) -> QuerySet[RewardScoring]:
    if not user_is_researcher(user):
        return RewardScoring.objects.none()
    return RewardScoring.objects.select_related("reward_run", "job")


# --- evaluations and rounds -----------------------------------------------------------------

BOOTSTRAP_ROUNDS = 1000


# --- reward-model assistance of labeling queues ---------------------------------------------


def queue_assistance_get(*, queue: LabelingQueue) -> QueueAssistance | None:
    return QueueAssistance.objects.select_related("reward_run").filter(queue=queue).first()


def queue_assistance_run_id(*, queue: LabelingQueue) -> int | None:
    """The id of the queue's assisting reward run, None without one."""
    return (
        QueueAssistance.objects.filter(queue=queue).values_list("reward_run_id", flat=True).first()
    )


def queue_assistance_run(*, queue: LabelingQueue) -> TrainingRun | None:
    assist = queue_assistance_get(queue=queue)
    return assist.reward_run if assist is not None else None


def queue_rewards(*, queue: LabelingQueue, reward_run_id: int) -> dict[int, float]:
    """completion id -> reward under the run, for the completions of the queue's tasks."""
    completions = TaskCompletion.objects.filter(task__queue=queue).values("completion_id")
    return dict(
        CompletionReward.objects.filter(
            reward_run_id=reward_run_id, completion_id__in=completions
        ).values_list("completion_id", "reward")
    )


def queue_reference_scores(queue: LabelingQueue) -> ReferenceScores | None:
    """labeling's dashboard hook: the assisting reward run's rewards of the queue's
    completions (None without a reward run)."""
    run = queue_assistance_run(queue=queue)
    if run is None:
        return None
    return ReferenceScores(name=run.name, scores=queue_rewards(queue=queue, reward_run_id=run.pk))


@dataclass(frozen=True)
class AILabelerAgreement:
    """One AI labeler of a queue against the human majority (admins only)."""

    username: str
    # (agreeing, counted) over the units where the humans have a strict majority.
    agreement: tuple[int, int]
    # The constitution labeler behind the username; None for a reward model's labeler.
    labeler: ConstitutionLabeler | None = None

    @property
    def rate(self) -> float | None:
        agree, counted = self.agreement
        return agree / counted if counted else None


def queue_ai_agreements(*, queue: LabelingQueue) -> list[AILabelerAgreement]:
    """Every AI labeler of the queue with its agreement with the humans: the constitution
    labelers (each a judge model and one constitution version), newest version first, then
    the others (reward models) by name. A constitution labeler without labels yet is
    listed with (0, 0)."""
    figures = labeling_selectors.queue_ai_agreement(queue=queue)
    labelers = list(
        ConstitutionLabeler.objects.filter(principle_set__queue=queue)
        .select_related("principle_set", "judge_model", "user")
        .order_by("-principle_set__version", "judge_model__name")
    )
    rows = [
        AILabelerAgreement(
            username=labeler.user.username,
            agreement=figures.get(labeler.user.username, (0, 0)),
            labeler=labeler,
        )
        for labeler in labelers
    ]
    known = {labeler.user.username for labeler in labelers}
    rows += [
        AILabelerAgreement(username=name, agreement=figures[name])
        for name in sorted(figures)
        if name not in known
    ]
    return rows


def queue_principle_sets(*, queue: LabelingQueue) -> QuerySet[PrincipleSet]:
    """The queue's constitution versions, newest first."""
    return PrincipleSet.objects.filter(queue=queue).order_by("-version")


def evaluation_list(*, user: User | AnonymousUser) -> QuerySet[Evaluation]:
    """Every evaluation for researchers and admins; nothing for anyone else (annotators
    never learn which models they are comparing)."""
    if not user_is_researcher(user):
        return Evaluation.objects.none()
    return Evaluation.objects.select_related("prompt_set", "queue", "created_by")


def evaluation_entries(*, evaluation: Evaluation) -> list[EvaluationEntry]:
    return list(
        EvaluationEntry.objects.filter(evaluation=evaluation)
        .select_related("model", "job")
        .order_by("position")
    )


@dataclass(frozen=True)
class LeaderboardRow:
    """One model's Bradley-Terry rating (Elo scale) with its bootstrap interval.

    ``rank`` is 1 + the number of models whose whole interval lies above this one's
    (Chatbot Arena's rank): models whose intervals overlap share a rank.
    """

    rank: int
    model: PolicyModel
    rating: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int

    @property
    def games(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def interval_known(self) -> bool:
        """False when every bootstrap round gave the same rating: no games, or outcomes
        that cannot vary under resampling (one model won every game it played). The
        percentile bootstrap says nothing about the uncertainty then."""
        return self.high - self.low > 1e-6


@dataclass(frozen=True)
class PairResult:
    """``model_a`` against ``model_b``: counts and win-rate from ``model_a``'s side."""

    model_a: PolicyModel
    model_b: PolicyModel
    result: WinRate


@dataclass(frozen=True)
class EvaluationResults:
    """Everything the results section shows.

    ``models`` in the evaluation's order; ``leaderboard`` best first; ``pairs`` every pair
    (i < j in ``models`` order); ``matrix[i][j]`` the win-rate of leaderboard model i
    against leaderboard model j (``None`` on the diagonal).
    """

    models: list[PolicyModel]
    comparisons: int
    leaderboard: list[LeaderboardRow]
    pairs: list[PairResult]
    matrix: list[list[WinRate | None]]
    confidence: float = 0.95
    bootstrap_rounds: int = BOOTSTRAP_ROUNDS


def _human_comparisons(queue_ids: Iterable[int]) -> QuerySet[Comparison]:
    # The AI labeler's votes are no human judgement of the models.
    return Comparison.objects.filter(queue_id__in=list(queue_ids)).exclude(
        annotator__groups__name=AI_LABELER_GROUP
    )


def evaluation_label_count(*, evaluation: Evaluation) -> int:
    """How many human comparisons the evaluation's queue holds so far."""
    if evaluation.queue_id is None:
        return 0
    return _human_comparisons([evaluation.queue_id]).count()


def evaluation_comparisons(*, evaluation: Evaluation) -> tuple[list[PolicyModel], np.ndarray]:
    """The evaluation's models and its human comparisons as ``[N, 3]`` rows ``(a, b, y)``
    of model indices (``y`` = 1: a won, 0.5: a tie), in the order they were made."""
    entries = evaluation_entries(evaluation=evaluation)
    models = [entry.model for entry in entries]
    if evaluation.queue_id is None:
        return models, np.zeros((0, 3))
    index = {entry.job_id: i for i, entry in enumerate(entries)}
    rows = []
    values = (
        _human_comparisons([evaluation.queue_id])
        .order_by("id")
        .values_list("chosen__job_id", "rejected__job_id", "is_tie")
    )
    for chosen_job, rejected_job, is_tie in values:
        a, b = index.get(chosen_job), index.get(rejected_job)
        if a is None or b is None or a == b:
            continue
        rows.append((a, b, 0.5 if is_tie else 1.0))
    return models, np.array(rows, dtype=np.float64).reshape(-1, 3)


def evaluation_results(
    *, evaluation: Evaluation, bootstrap_rounds: int = BOOTSTRAP_ROUNDS
) -> EvaluationResults:
    """Win/tie/loss counts and Wilson intervals per pair of models, and a Bradley-Terry
    leaderboard (ties count half) with percentile-bootstrap intervals, from the human
    comparisons of the evaluation's queue. Deterministic: the bootstrap is seeded with the
    evaluation's seed. Researchers and admins only: the caller checks."""
    models, rows = evaluation_comparisons(evaluation=evaluation)
    n = len(models)
    counts = ratings.pair_counts(rows, n)
    fit = ratings.bradley_terry_fit(rows, n)
    intervals = ratings.bootstrap_ratings(
        rows, n, rounds=bootstrap_rounds, seed=int(evaluation.seed) % 2**32
    )
    order = sorted(range(n), key=lambda i: (-fit.ratings[i], i))
    leaderboard = []
    for i in order:
        wins, ties, losses = (int(c) for c in counts[i].sum(axis=0))
        above = sum(1 for j in range(n) if j != i and intervals.low[j] > intervals.high[i])
        leaderboard.append(
            LeaderboardRow(
                rank=1 + above,
                model=models[i],
                rating=float(fit.ratings[i]),
                low=float(intervals.low[i]),
                high=float(intervals.high[i]),
                wins=wins,
                ties=ties,
                losses=losses,
            )
        )
    pairs = [
        PairResult(models[i], models[j], ratings.win_rate(*(int(c) for c in counts[i, j])))
        for i in range(n)
        for j in range(i + 1, n)
    ]
    matrix = [
        [None if i == j else ratings.win_rate(*(int(c) for c in counts[i, j])) for j in order]
        for i in order
    ]
    return EvaluationResults(
        models=models,
        comparisons=len(rows),
        leaderboard=leaderboard,
        pairs=pairs,
        matrix=matrix,
        bootstrap_rounds=bootstrap_rounds,
    )


def evaluation_chart(results: EvaluationResults) -> dict[str, Any]:
    """The leaderboard chart's data (best first): labels, ratings and interval bounds."""
    return {
        "labels": [row.model.name for row in results.leaderboard],
        "ratings": [round(row.rating, 1) for row in results.leaderboard],
        "low": [round(row.low, 1) for row in results.leaderboard],
        "high": [round(row.high, 1) for row in results.leaderboard],
    }


def models_win_rate(*, model: PolicyModel, other: PolicyModel) -> tuple[WinRate, Evaluation | None]:
    """``model``'s win-rate against ``other`` over every evaluation that compared them, and
    the newest such evaluation (``None`` when none did)."""
    return models_win_rates(pairs=[(model, other)]).get(
        (model.pk, other.pk), (ratings.win_rate(0, 0, 0), None)
    )


def models_win_rates(
    *, pairs: Iterable[tuple[PolicyModel, PolicyModel]]
) -> dict[tuple[int, int], tuple[WinRate, Evaluation | None]]:
    """For each (model, other): the win-rate of model against other summed over the
    evaluations that compared both, and the newest of them. Pairs no evaluation compared
    are left out. One query for the comparisons, one for the entries."""
    wanted = {(a.pk, b.pk) for a, b in pairs}
    if not wanted:
        return {}
    model_ids = {pk for pair in wanted for pk in pair}
    entries = EvaluationEntry.objects.filter(model_id__in=model_ids).select_related("evaluation")
    by_evaluation: dict[int, dict[int, int]] = defaultdict(dict)  # evaluation -> job -> model
    evaluations: dict[int, Evaluation] = {}
    for entry in entries:
        by_evaluation[entry.evaluation_id][entry.job_id] = entry.model_id
        evaluations[entry.evaluation_id] = entry.evaluation
    newest: dict[tuple[int, int], Evaluation] = {}
    for evaluation_id, jobs in by_evaluation.items():
        present = set(jobs.values())
        for a, b in wanted:
            if a in present and b in present:
                known = newest.get((a, b))
                candidate = evaluations[evaluation_id]
                if known is None or candidate.created_at > known.created_at:
                    newest[(a, b)] = candidate
    queues = {e.queue_id: e.pk for e in evaluations.values() if e.queue_id is not None}
    tallies: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    rows = _human_comparisons(queues).values_list(
        "queue_id", "chosen__job_id", "rejected__job_id", "is_tie"
    )
    for queue_id, chosen_job, rejected_job, is_tie in rows:
        jobs = by_evaluation[queues[queue_id]]
        chosen, rejected = jobs.get(chosen_job), jobs.get(rejected_job)
        if chosen is None or rejected is None:
            continue
        for first, second, outcome in ((chosen, rejected, 0), (rejected, chosen, 2)):
            if (first, second) in wanted:
                tallies[(first, second)][1 if is_tie else outcome] += 1
    return {
        key: (ratings.win_rate(*tallies[key]), evaluation) for key, evaluation in newest.items()
    }


@dataclass(frozen=True)
class TimelineEntry:
    """One model of the rounds timeline: where it sits in its lineage and how it did."""

    depth: int
    model: PolicyModel
    run: TrainingRun | None
    reward_accuracy: float | None
    vs_parent: WinRate | None
    vs_parent_evaluation: Evaluation | None
    rounds: list[Round]


def rounds_timeline() -> list[TimelineEntry]:
    """Every trained policy model and its ancestors, in lineage order (each root, then its
    descendants depth first, oldest first): the run that made it (kind, snapshot), the
    held-out accuracy of the reward model behind a PPO or GRPO run, the win-rate against the
    parent when an evaluation compared the two, and the next rounds sampled from it."""
    runs = {
        run.output_model_id: run
        for run in TrainingRun.objects.filter(output_model__isnull=False).select_related(
            "snapshot", "reward_run", "base_model"
        )
    }
    models = {m.pk: m for m in PolicyModel.objects.filter(pk__in=list(runs))}
    pending = {m.parent_id for m in models.values() if m.parent_id is not None}
    while pending - set(models):
        found = PolicyModel.objects.filter(pk__in=list(pending - set(models)))
        models.update({m.pk: m for m in found})
        pending = {m.parent_id for m in found if m.parent_id is not None}
    children: dict[int | None, list[PolicyModel]] = defaultdict(list)
    for model in models.values():
        parent = model.parent_id if model.parent_id in models else None
        children[parent].append(model)
    for group in children.values():
        group.sort(key=lambda m: (m.created_at, m.pk))
    parents = [(m, models[m.parent_id]) for m in models.values() if m.parent_id in models]
    versus = models_win_rates(pairs=parents)
    rounds: dict[int, list[Round]] = defaultdict(list)
    for next_round in Round.objects.filter(model_id__in=list(models)).select_related(
        "job", "queue"
    ):
        rounds[next_round.model_id].append(next_round)

    timeline: list[TimelineEntry] = []

    def visit(model: PolicyModel, depth: int) -> None:
        run = runs.get(model.pk)
        accuracy = None
        if run is not None and run.kind in TrainingRun.RL_KINDS and run.reward_run is not None:
            accuracy = reward_run_heldout_accuracy(run=run.reward_run)
        rate, evaluation = versus.get((model.pk, model.parent_id or 0), (None, None))
        timeline.append(
            TimelineEntry(
                depth=depth,
                model=model,
                run=run,
                reward_accuracy=accuracy,
                vs_parent=rate,
                vs_parent_evaluation=evaluation,
                rounds=sorted(rounds[model.pk], key=lambda r: r.created_at),
            )
        )
        for child in children.get(model.pk, []):
            visit(child, depth + 1)

    for root in children[None]:
        visit(root, 0)
    return timeline
