from __future__ import annotations

from django.urls import path

from config.jobs.urls import job_action_urls
from training import api, api_schema  # noqa: F401 - api_schema documents the views

urlpatterns = [
    path("runs/", api.TrainingRunListAPI.as_view(), name="api-run-list"),
    path("runs/<int:pk>/", api.TrainingRunDetailAPI.as_view(), name="api-run-detail"),
    *job_action_urls("runs/<int:pk>/", api.TrainingRunActionAPI, "api-run"),
    path("runs/<int:pk>/metrics/", api.TrainingRunMetricsAPI.as_view(), name="api-run-metrics"),
    path("scorings/", api.RewardScoringListAPI.as_view(), name="api-scoring-list"),
    *job_action_urls("scorings/<int:pk>/", api.RewardScoringActionAPI, "api-scoring"),
    path("evaluations/", api.EvaluationListAPI.as_view(), name="api-evaluation-list"),
    path(
        "evaluations/<int:pk>/",
        api.EvaluationDetailAPI.as_view(),
        name="api-evaluation-detail",
    ),
    path(
        "evaluations/<int:pk>/leaderboard/",
        api.EvaluationLeaderboardAPI.as_view(),
        name="api-evaluation-leaderboard",
    ),
]
