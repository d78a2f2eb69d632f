from __future__ import annotations

from django.urls import path

from config.jobs.urls import job_action_urls
from training import evaluation_views, views

app_name = "training"
urlpatterns = [
    path("runs/", views.run_list, name="run-list"),
    path("runs/new/", views.run_create, name="run-create"),
    path("runs/compare/", views.run_compare, name="run-compare"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/metrics.json", views.run_metrics, name="run-metrics"),
    *job_action_urls("runs/<int:pk>/", views.run_action, "run"),
    path("scorings/", views.scoring_create, name="scoring-create"),
    *job_action_urls("scorings/<int:pk>/", views.scoring_action, "scoring"),
    path("runs/<int:pk>/next-round/", evaluation_views.run_next_round, name="run-next-round"),
    path(
        "runs/<int:pk>/compare-parent/",
        evaluation_views.run_compare_parent,
        name="run-compare-parent",
    ),
    path("evaluations/", evaluation_views.evaluation_list, name="evaluation-list"),
    path("evaluations/<int:pk>/", evaluation_views.evaluation_detail, name="evaluation-detail"),
    path("rounds/", evaluation_views.round_list, name="round-list"),
]
