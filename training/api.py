"""REST API for training runs and reward scorings (token or session auth).

Researchers and admins read; only admins write. Annotators get 404s: they label blind.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.roles import IsResearcher, user_is_admin
from generation.models import GenerationJob, PolicyModel
from labeling.models import DatasetSnapshot
from training import selectors, services
from training.models import RewardScoring, TrainingRun


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
    base_model = serializers.PrimaryKeyRelatedField(queryset=PolicyModel.objects.all())
    snapshot = serializers.PrimaryKeyRelatedField(queryset=DatasetSnapshot.objects.all())
    reward_run = serializers.PrimaryKeyRelatedField(
        queryset=TrainingRun.objects.all(), required=False, allow_null=True, default=None
    )
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    config = serializers.DictField(required=False, default=dict)


class RewardScoringSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = RewardScoring
        fields = [
            "id",
            "reward_run",
            "job",
            "status",
            "scored",
            "total",
            "mean_reward",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class RewardScoringCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    reward_run = serializers.PrimaryKeyRelatedField(queryset=TrainingRun.objects.all())
    job = serializers.PrimaryKeyRelatedField(queryset=GenerationJob.objects.all())


def _admin_only(request: Request) -> Response | None:
    if not user_is_admin(request.user):
        return Response(
            {"detail": "Only admins can change this."}, status=status.HTTP_403_FORBIDDEN
        )
    return None


def _run_error(exc: services.RunError, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    """``{"detail": message, "field": name}``, and ``{name: [message]}`` as DRF writes it."""
    body: dict[str, Any] = {"detail": str(exc), "field": exc.field or None}
    if exc.field and exc.field not in body:
        body[exc.field] = [str(exc)]
    return Response(body, status=code)


class BaseAPIView(APIView):
    permission_classes = [IsAuthenticated, IsResearcher]

    def permission_denied(self, request: Request, message: Any = None, code: Any = None) -> None:
        # Annotators must not learn that training runs exist: 404, not 403.
        from django.http import Http404

        if request.user and request.user.is_authenticated:
            raise Http404
        super().permission_denied(request, message, code)


class TrainingRunListAPI(BaseAPIView):
    def get(self, request: Request) -> Response:
        runs = selectors.training_run_list(user=request.user)
        if kind := request.query_params.get("kind"):
            runs = runs.filter(kind=kind)
        if run_status := request.query_params.get("status"):
            runs = runs.filter(status=run_status)
        return Response(TrainingRunSerializer(runs[:500], many=True).data)

    def post(self, request: Request) -> Response:
        if denied := _admin_only(request):
            return denied
        serializer = TrainingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = services.training_run_create(user=request.user, **serializer.validated_data)
        except services.RunError as exc:
            return _run_error(exc)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)


class TrainingRunDetailAPI(BaseAPIView):
    def get(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(selectors.training_run_list(user=request.user), pk=pk)
        return Response(TrainingRunSerializer(run).data)


class TrainingRunActionAPI(BaseAPIView):
    action: str = ""

    def post(self, request: Request, pk: int) -> Response:
        if denied := _admin_only(request):
            return denied
        run = get_object_or_404(selectors.training_run_list(user=request.user), pk=pk)
        action = (
            services.training_run_cancel
            if self.action == "cancel"
            else services.training_run_resume
        )
        try:
            run = action(run=run)
        except services.RunError as exc:
            return _run_error(exc, status.HTTP_409_CONFLICT)
        return Response(TrainingRunSerializer(run).data)


class TrainingRunMetricsAPI(BaseAPIView):
    def get(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(selectors.training_run_list(user=request.user), pk=pk)
        try:
            after = int(request.query_params.get("after", -1))
        except ValueError:
            return Response(
                {"detail": "after must be a step number", "field": "after"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        curves = selectors.training_run_curves(run=run, after_step=after)
        return Response({"run": run.pk, "status": run.status, "step": run.step, **curves})


class RewardScoringListAPI(BaseAPIView):
    def get(self, request: Request) -> Response:
        scorings = selectors.reward_scoring_list(user=request.user)
        if (job := request.query_params.get("job", "")).isdigit():
            scorings = scorings.filter(job_id=int(job))
        return Response(RewardScoringSerializer(scorings[:500], many=True).data)

    def post(self, request: Request) -> Response:
        if denied := _admin_only(request):
            return denied
        serializer = RewardScoringCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            scoring = services.reward_scoring_create(user=request.user, **serializer.validated_data)
        except services.RunError as exc:
            return _run_error(exc)
        return Response(RewardScoringSerializer(scoring).data, status=status.HTTP_201_CREATED)
