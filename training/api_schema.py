"""The OpenAPI description of training/api.py's views (drf-spectacular): bodies, query
parameters, who may call each one, and the list views' pagination."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from config.pagination import Pagination
from training import api

for view in (api.TrainingRunListAPI, api.RewardScoringListAPI, api.EvaluationListAPI):
    view.pagination_class = Pagination  # type: ignore[attr-defined]

READ = "researchers and admins (annotators get 404)"
READ_WRITE = {"GET": READ, "POST": "admins (researchers get 403, annotators 404)"}
for view in (api.TrainingRunListAPI, api.RewardScoringListAPI, api.EvaluationListAPI):
    view.schema_access = READ_WRITE  # type: ignore[attr-defined]
for view in (
    api.TrainingRunDetailAPI,
    api.TrainingRunMetricsAPI,
    api.EvaluationDetailAPI,
    api.EvaluationLeaderboardAPI,
):
    view.schema_access = READ  # type: ignore[attr-defined]
for view in (api.TrainingRunActionAPI, api.RewardScoringActionAPI):
    view.schema_access = READ_WRITE["POST"]  # type: ignore[attr-defined]

RUN_ERROR = OpenApiResponse(description="`detail` says why and `field` names the bad field.")

extend_schema_view(
    get=extend_schema(
        summary="List training runs",
        parameters=[
            OpenApiParameter("kind", str, description="reward, dpo, ppo or sft"),
            OpenApiParameter("status", str, description="only runs in this status"),
        ],
        responses=api.TrainingRunSerializer(many=True),
    ),
    post=extend_schema(
        summary="Launch a training run",
        description="`config` holds the kind's settings (training/core/configs.py); a bad "
        "value is a 400 naming the field.",
        request=api.TrainingRunCreateSerializer,
        responses={201: api.TrainingRunSerializer, 400: RUN_ERROR},
    ),
)(api.TrainingRunListAPI)
extend_schema_view(
    get=extend_schema(summary="A training run", responses=api.TrainingRunSerializer),
)(api.TrainingRunDetailAPI)
extend_schema_view(
    post=extend_schema(
        summary="Cancel or resume a run",
        request=None,
        responses={200: api.TrainingRunSerializer, 409: RUN_ERROR},
    ),
)(api.TrainingRunActionAPI)
extend_schema_view(
    post=extend_schema(
        summary="Cancel or resume a reward scoring",
        description="Cancel stops a queued scoring at once, a running one after its current "
        "chunk; resume queues a failed or cancelled scoring again (it scores the job again).",
        request=None,
        responses={200: api.RewardScoringSerializer, 409: RUN_ERROR},
    ),
)(api.RewardScoringActionAPI)
extend_schema_view(
    get=extend_schema(
        summary="A run's metric curves",
        parameters=[OpenApiParameter("after", int, description="only steps after this one")],
        responses=inline_serializer(
            "RunCurves",
            {
                "run": serializers.IntegerField(),
                "status": serializers.CharField(),
                "step": serializers.IntegerField(),
            },
        ),
    ),
)(api.TrainingRunMetricsAPI)
extend_schema_view(
    get=extend_schema(
        summary="List reward scorings",
        parameters=[OpenApiParameter("job", int, description="only this generation job's")],
        responses=api.RewardScoringSerializer(many=True),
    ),
    post=extend_schema(
        summary="Score a job's completions with a reward run",
        request=api.RewardScoringCreateSerializer,
        responses={201: api.RewardScoringSerializer, 400: RUN_ERROR},
    ),
)(api.RewardScoringListAPI)
extend_schema_view(
    get=extend_schema(summary="List evaluations", responses=api.EvaluationSerializer(many=True)),
    post=extend_schema(
        summary="Create a blind evaluation",
        request=api.EvaluationCreateSerializer,
        responses={201: api.EvaluationSerializer, 400: RUN_ERROR},
    ),
)(api.EvaluationListAPI)
extend_schema_view(
    get=extend_schema(summary="An evaluation", responses=api.EvaluationSerializer),
)(api.EvaluationDetailAPI)
extend_schema_view(
    get=extend_schema(
        summary="An evaluation's leaderboard (Bradley-Terry ratings, win rates)",
        responses=OpenApiResponse(description="`leaderboard` and `pairs`, see the README."),
    ),
)(api.EvaluationLeaderboardAPI)
