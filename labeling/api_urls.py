from __future__ import annotations

from django.urls import path

from labeling import api, api_schema  # noqa: F401 - api_schema documents the views

urlpatterns = [
    path("queues/", api.QueueListAPI.as_view(), name="api-queue-list"),
    path("queues/<int:pk>/next/", api.NextTaskAPI.as_view(), name="api-queue-next"),
    path("queues/<int:pk>/submit/", api.SubmitAPI.as_view(), name="api-queue-submit"),
    path("queues/<int:pk>/undo/", api.UndoAPI.as_view(), name="api-queue-undo"),
    path("tasks/<int:pk>/gold/", api.GoldAPI.as_view(), name="api-task-gold"),
    path("snapshots/", api.SnapshotListAPI.as_view(), name="api-snapshot-list"),
    path("snapshots/<int:pk>/", api.SnapshotDetailAPI.as_view(), name="api-snapshot-detail"),
    path(
        "snapshots/<int:pk>/export.jsonl",
        api.SnapshotExportAPI.as_view(),
        name="api-snapshot-export",
    ),
    path(
        "snapshots/<int:pk>/export.parquet",
        api.SnapshotParquetAPI.as_view(),
        name="api-snapshot-parquet",
    ),
    path(
        "snapshots/<int:pk>/unpaired.jsonl",
        api.SnapshotUnpairedExportAPI.as_view(),
        name="api-snapshot-unpaired",
    ),
    path("snapshots/<int:pk>/README.md", api.SnapshotCardAPI.as_view(), name="api-snapshot-card"),
    path("preferences/import/", api.PreferenceImportAPI.as_view(), name="api-preference-import"),
    path("labels/export.jsonl", api.LabelVersionsExportAPI.as_view(), name="api-label-versions"),
    path("rankings/", api.RankingListAPI.as_view(), name="api-ranking-list"),
    path("comparisons/", api.ComparisonListAPI.as_view(), name="api-comparison-list"),
]
