"""REST API for training runs, reward scorings and evaluations (token or session auth).

Researchers and admins read; only admins write. Annotators get 404s: they label blind.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.bounds import SEED_MAX, query_id, query_int
from config.fields import IdField
from config.jobs.api import JobActionAPIMixin
from config.pagination import paginated_response
from config.roles import ResearcherAPIView
from generation.models import GenerationJob, PolicyModel, PromptSet
from labeling.models import DatasetSnapshot
from training import evaluations, runs, scorings, selectors
from training.models import Evaluation, RewardScoring, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    progress_percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "name",
            "kind",
            "base_model",
            "snapshot",
            "reward_run",
            "config",
            "notes",
            "status",
            "cancel_requested",
            "step",
            "total_steps",
            "progress_percent",
            "metrics",
            "eval_metrics",
            "reward_stats",
            "log_tail",
            "error",
            "attempts",
            "artifacts_dir",
            "checkpoint_dir",
            "final_dir",
            "output_model",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class TrainingRunCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.ChoiceField(choices=TrainingRun.Kind.choices)
    base_model = IdField(queryset=PolicyModel.objects.all())
    snapshot = IdField(queryset=DatasetSnapshot.objects.all())
    reward_run = IdField(
        queryset=TrainingRun.objects.all(), required=False, allow_null=True, default=None
    )
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    config = serializers.DictField(
        required=False,
        default=dict,
        help_text="Fields of the kind's config; those left out take the base model's "
        "recommended settings for the kind, then the kind's defaults.",
    )


class RewardScoringSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = RewardScoring
        fields = [
            "id",
            "reward_run",
            "job",
            "status",
            "cancel_requested",
            "scored",
            "total",
            "mean_reward",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class RewardScoringCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    reward_run = IdField(queryset=TrainingRun.objects.all())
    job = IdField(queryset=GenerationJob.objects.all())


def _run_error(exc: runs.RunError, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    """``{"detail": message, "field": name}``, and ``{name: [message]}`` as DRF writes it."""
    body: dict[str, Any] = {"detail": str(exc), "field": exc.field or None}
    if exc.field and exc.field not in body:
        body[exc.field] = [str(exc)]
    return Response(body, status=code)


class TrainingRunListAPI(ResearcherAPIView):
    def get(self, request: Request) -> Response:
        runs = selectors.training_run_list(user=request.user)
        if kind := request.query_params.get("kind"):
            runs = runs.filter(kind=kind)
        if run_status := request.query_params.get("status"):
            runs = runs.filter(status=run_status)
        return paginated_response(self, request, runs, TrainingRunSerializer)

    def post(self, request: Request) -> Response:
        serializer = TrainingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = runs.training_run_create(user=request.user, **serializer.validated_data)
        except runs.RunError as exc:
            return _run_error(exc)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)


class TrainingRunDetailAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(selectors.training_run_list(user=request.user), pk=pk)
        return Response(TrainingRunSerializer(run).data)


class _JobActionAPI(JobActionAPIMixin, ResearcherAPIView):
    def job_action_error(self, exc: Exception) -> Response:
        return _run_error(exc, status.HTTP_409_CONFLICT)  # type: ignore[arg-type]


class TrainingRunActionAPI(_JobActionAPI):
    lifecycle = runs.run_lifecycle
    job_serializer = TrainingRunSerializer
    job_list = staticmethod(selectors.training_run_list)


class TrainingRunMetricsAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(selectors.training_run_list(user=request.user), pk=pk)
        after = query_int(request.query_params, "after", default=-1, minimum=-1, maximum=2**62)
        curves = selectors.training_run_curves(run=run, after_step=after)
        return Response({"run": run.pk, "status": run.status, "step": run.step, **curves})


class RewardScoringListAPI(ResearcherAPIView):
    def get(self, request: Request) -> Response:
        scorings = selectors.reward_scoring_list(user=request.user)
        if (job := query_id(request.query_params, "job")) is not None:
            scorings = scorings.filter(job_id=job)
        return paginated_response(self, request, scorings, RewardScoringSerializer)

    def post(self, request: Request) -> Response:
        serializer = RewardScoringCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            scoring = scorings.reward_scoring_create(user=request.user, **serializer.validated_data)
        except runs.RunError as exc:
            return _run_error(exc)
        return Response(RewardScoringSerializer(scoring).data, status=status.HTTP_201_CREATED)


class RewardScoringActionAPI(_JobActionAPI):
    lifecycle = scorings.scoring_lifecycle
    job_serializer = RewardScoringSerializer
    job_list = staticmethod(selectors.reward_scoring_list)


# --- evaluations --------------------------------------------------------------------------------


class EvaluationSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    models = serializers.SerializerMethodField()
    jobs = serializers.SerializerMethodField()
    labels = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = [
            "id",
            "name",
            "status",
            "error",
            "models",
            "jobs",
            "prompt_set",
            "max_new_tokens",
            "temperature",
            "seed",
            "overlap",
            "queue",
            "labels",
            "created_at",
        ]
        read_only_fields = fields

    def get_models(self, evaluation: Evaluation) -> list[dict[str, Any]]:
        return [
            {"id": entry.model_id, "name": entry.model.name}
            for entry in evaluation.entries.all()  # type: ignore[attr-defined]
        ]

    def get_jobs(self, evaluation: Evaluation) -> list[dict[str, Any]]:
        return [
            {
                "id": entry.job_id,
                "model": entry.model_id,
                "status": entry.job.status,
                "prompts_done": entry.job.prompts_done,
                "prompts_total": entry.job.prompts_total,
            }
            for entry in evaluation.entries.all()  # type: ignore[attr-defined]
        ]

    def get_labels(self, evaluation: Evaluation) -> int:
        return selectors.evaluation_label_count(evaluation=evaluation)


class EvaluationCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=200)
    models = IdField(queryset=PolicyModel.objects.all(), many=True)
    prompt_set = IdField(queryset=PromptSet.objects.all())
    max_new_tokens = serializers.IntegerField(min_value=1, max_value=8192, default=128)
    temperature = serializers.FloatField(min_value=0, max_value=100, default=0.7)
    seed = serializers.IntegerField(min_value=0, max_value=SEED_MAX, default=0)
    overlap = serializers.IntegerField(min_value=1, max_value=20, default=1)


def _evaluations(request: Request) -> Any:
    return selectors.evaluation_list(user=request.user).prefetch_related(
        "entries__model", "entries__job"
    )


def leaderboard_payload(
    evaluation: Evaluation, results: selectors.EvaluationResults
) -> dict[str, Any]:
    """The leaderboard as JSON: the API's answer and ``manage.py leaderboard --json``."""

    def rate(result: Any) -> dict[str, Any]:
        return {
            "wins": result.wins,
            "ties": result.ties,
            "losses": result.losses,
            "win_rate": result.rate,
            "ci_low": result.low,
            "ci_high": result.high,
        }

    return {
        "evaluation": evaluation.pk,
        "name": evaluation.name,
        "status": evaluation.status,
        "comparisons": results.comparisons,
        "confidence": results.confidence,
        "bootstrap_rounds": results.bootstrap_rounds,
        "leaderboard": [
            {
                "rank": row.rank,
                "model": row.model.pk,
                "model_name": row.model.name,
                "rating": row.rating,
                "ci_low": row.low,
                "ci_high": row.high,
                "wins": row.wins,
                "ties": row.ties,
                "losses": row.losses,
            }
            for row in results.leaderboard
        ],
        "pairs": [
            {"model_a": pair.model_a.pk, "model_b": pair.model_b.pk, **rate(pair.result)}
            for pair in results.pairs
        ],
    }


class EvaluationListAPI(ResearcherAPIView):
    def get(self, request: Request) -> Response:
        return paginated_response(self, request, _evaluations(request), EvaluationSerializer)

    def post(self, request: Request) -> Response:
        serializer = EvaluationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            evaluation = evaluations.evaluation_create(
                user=request.user, **serializer.validated_data
            )
        except runs.RunError as exc:
            return _run_error(exc)
        evaluation = _evaluations(request).get(pk=evaluation.pk)
        return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_201_CREATED)


class EvaluationDetailAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        evaluation = get_object_or_404(_evaluations(request), pk=pk)
        evaluation = evaluations.evaluation_advance(evaluation=evaluation)
        return Response(EvaluationSerializer(evaluation).data)


class EvaluationLeaderboardAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        evaluation = get_object_or_404(_evaluations(request), pk=pk)
        evaluation = evaluations.evaluation_advance(evaluation=evaluation)
        results = selectors.evaluation_results(evaluation=evaluation)
        return Response(leaderboard_payload(evaluation, results))
