"""The OpenAPI description of labeling/api.py's views (drf-spectacular): bodies, query
parameters, who may call each one, and the list views' pagination."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from config.pagination import Pagination
from labeling import api

for view in (api.QueueListAPI, api.RankingListAPI, api.ComparisonListAPI, api.SnapshotListAPI):
    view.pagination_class = Pagination  # type: ignore[attr-defined]

LABELERS = "annotators (on queues open to them) and admins"
RESEARCHERS = "researchers and admins"
api.QueueListAPI.schema_access = (  # type: ignore[attr-defined]
    "annotators (the queues they may label), researchers and admins (every queue, read-only)"
)
for view in (api.NextTaskAPI, api.SubmitAPI, api.UndoAPI):
    view.schema_access = LABELERS  # type: ignore[attr-defined]
api.RankingListAPI.schema_access = (  # type: ignore[attr-defined]
    "annotators (their own) and admins (everyone's)"
)
api.ComparisonListAPI.schema_access = api.RankingListAPI.schema_access  # type: ignore[attr-defined]
api.GoldAPI.schema_access = "admins (others get 404)"  # type: ignore[attr-defined]
for view in (
    api.SnapshotListAPI,
    api.SnapshotDetailAPI,
    api.SnapshotExportAPI,
    api.SnapshotUnpairedExportAPI,
    api.SnapshotParquetAPI,
    api.SnapshotCardAPI,
    api.LabelVersionsExportAPI,
):
    view.schema_access = RESEARCHERS  # type: ignore[attr-defined]
api.PreferenceImportAPI.schema_access = "admins"  # type: ignore[attr-defined]

TaskSerializer = inline_serializer(
    "LabelingTask",
    {
        "assignment": serializers.IntegerField(),
        "task": serializers.IntegerField(),
        "expires_at": serializers.DateTimeField(),
        "prompt": serializers.JSONField(),
        "completions": serializers.ListField(child=serializers.JSONField()),
    },
)
QUEUE_FILTER = OpenApiParameter("queue", int, description="only this queue's (an id)")
SPLIT = OpenApiParameter("split", str, enum=["train", "eval"], description="one split only")

extend_schema_view(
    get=extend_schema(summary="List labeling queues", responses=api.QueueSerializer(many=True)),
)(api.QueueListAPI)
extend_schema_view(
    post=extend_schema(
        summary="Claim the next task (a lease)",
        request=None,
        responses={200: TaskSerializer, 204: OpenApiResponse(description="Nothing left for you.")},
    ),
)(api.NextTaskAPI)
extend_schema_view(
    post=extend_schema(
        summary="Submit (or skip) a claimed task",
        description=(
            "Pairwise and ranking queues take an `order` (tie groups of answer aliases, best "
            "first); single-answer queues take a `verdict` (`good` or `bad`) and an optional "
            "`score` (1-7). A 400 names the field at fault (`field`)."
        ),
        request=api.SubmitSerializer,
        responses={
            201: api.RankingSerializer,
            200: OpenApiResponse(description="Skipped."),
            409: OpenApiResponse(description="The lease expired."),
        },
    ),
)(api.SubmitAPI)
extend_schema_view(
    post=extend_schema(
        summary="Undo your last submission in the queue",
        request=None,
        responses={200: TaskSerializer, 409: OpenApiResponse(description="Nothing to undo.")},
    ),
)(api.UndoAPI)
extend_schema_view(
    post=extend_schema(
        summary="Mark a task as gold with its known order",
        request=inline_serializer(
            "GoldOrder",
            {
                "order": serializers.ListField(
                    child=serializers.ListField(child=serializers.IntegerField())
                )
            },
        ),
        responses={200: OpenApiResponse(description="`task`, `is_gold`, `gold_order`.")},
    ),
)(api.GoldAPI)
extend_schema_view(
    get=extend_schema(
        summary="List rankings",
        parameters=[QUEUE_FILTER],
        responses=api.RankingSerializer(many=True),
    ),
)(api.RankingListAPI)
extend_schema_view(
    get=extend_schema(
        summary="List pairwise comparisons",
        parameters=[QUEUE_FILTER],
        responses=api.ComparisonSerializer(many=True),
    ),
)(api.ComparisonListAPI)
extend_schema_view(
    get=extend_schema(summary="List snapshots", responses=api.SnapshotSerializer(many=True)),
    post=extend_schema(
        summary="Build a snapshot",
        request=api.SnapshotCreateSerializer,
        responses={201: api.SnapshotSerializer},
    ),
)(api.SnapshotListAPI)
extend_schema_view(
    get=extend_schema(summary="A snapshot", responses=api.SnapshotSerializer),
)(api.SnapshotDetailAPI)
extend_schema_view(
    get=extend_schema(
        summary="Export as TRL preference JSONL",
        parameters=[SPLIT],
        responses={(200, "application/jsonl"): OpenApiTypes.STR},
    ),
)(api.SnapshotExportAPI)
extend_schema_view(
    get=extend_schema(
        summary="Export the single-answer labels as TRL unpaired JSON lines (KTO)",
        description="`prompt`, `completion`, `label` (true: good), `score`, `votes`, "
        "`agreement`, `annotator`, `queue`, `snapshot`.",
        parameters=[SPLIT],
        responses={(200, "application/jsonl"): OpenApiTypes.STR},
    ),
)(api.SnapshotUnpairedExportAPI)
extend_schema_view(
    get=extend_schema(
        summary="Export as Parquet",
        parameters=[SPLIT],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    ),
)(api.SnapshotParquetAPI)
extend_schema_view(
    get=extend_schema(
        summary="The snapshot's data card",
        responses={(200, "text/markdown"): OpenApiTypes.STR},
    ),
)(api.SnapshotCardAPI)
extend_schema_view(
    post=extend_schema(
        summary="Import labeled pairs (HH-RLHF or TRL JSONL) as comparisons (atomic)",
        request={
            "multipart/form-data": api.PreferenceImportSerializer,
            "application/json": api.PreferenceImportSerializer,
        },
        responses={201: OpenApiResponse(description="`queue`, `name`, `comparisons`.")},
    ),
)(api.PreferenceImportAPI)
extend_schema_view(
    get=extend_schema(
        summary="Every version of every label, as JSON lines",
        parameters=[
            OpenApiParameter("queue", int, many=True, description="only these queues (repeatable)")
        ],
        responses={(200, "application/jsonl"): OpenApiTypes.STR},
    ),
)(api.LabelVersionsExportAPI)
