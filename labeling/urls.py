from __future__ import annotations

from django.urls import path

from labeling import access_views, review_views, search_views, snapshot_views, views

app_name = "labeling"
urlpatterns = [
    path("", views.queue_index, name="index"),
    path("search/", search_views.search_page, name="search"),
    path("rejected/", review_views.my_rejections, name="my-rejections"),
    path("labels/<int:ranking_id>/relabel/", review_views.relabel, name="relabel"),
    path("queues/<int:pk>/review/", review_views.review_page, name="queue-review"),
    path(
        "queues/<int:pk>/labels/<int:ranking_id>/review/",
        review_views.review_label,
        name="label-review",
    ),
    path("prompts/<int:pk>/", search_views.prompt_detail, name="prompt-detail"),
    path("queues/new/", views.queue_create, name="queue-create"),
    path("queues/<int:pk>/", views.label, name="queue-label"),
    path("queues/<int:pk>/submit/", views.submit, name="queue-submit"),
    path("queues/<int:pk>/undo/", views.undo, name="queue-undo"),
    path("queues/<int:pk>/dashboard/", views.dashboard, name="queue-dashboard"),
    path(
        "queues/<int:pk>/annotators/",
        access_views.queue_annotators,
        name="queue-annotators",
    ),
    path("snapshots/", snapshot_views.snapshot_list, name="snapshot-list"),
    path("labels.jsonl", snapshot_views.label_versions_export, name="label-versions"),
    path("snapshots/<int:pk>/", snapshot_views.snapshot_detail, name="snapshot-detail"),
    path("snapshots/<int:pk>/export.jsonl", snapshot_views.snapshot_export, name="snapshot-export"),
    path(
        "snapshots/<int:pk>/export.parquet",
        snapshot_views.snapshot_export_parquet,
        name="snapshot-export-parquet",
    ),
    path(
        "snapshots/<int:pk>/rankings.jsonl",
        snapshot_views.snapshot_export_extra,
        {"kind": "rankings"},
        name="snapshot-export-rankings",
    ),
    path(
        "snapshots/<int:pk>/sft.jsonl",
        snapshot_views.snapshot_export_extra,
        {"kind": "sft"},
        name="snapshot-export-sft",
    ),
    path(
        "snapshots/<int:pk>/unpaired.jsonl",
        snapshot_views.snapshot_export_extra,
        {"kind": "unpaired"},
        name="snapshot-export-unpaired",
    ),
    path("snapshots/<int:pk>/README.md", snapshot_views.snapshot_card, name="snapshot-card"),
]
