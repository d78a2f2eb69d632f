from __future__ import annotations

from django.urls import path

from training import api, api_schema  # noqa: F401 - api_schema documents the views

urlpatterns = [
    path("runs/", api.TrainingRunListAPI.as_view(), name="api-run-list"),
    path("runs/<int:pk>/", api.TrainingRunDetailAPI.as_view(), name="api-run-detail"),
    path(
        "runs/<int:pk>/cancel/",
        api.TrainingRunActionAPI.as_view(action="cancel"),
        name="api-run-cancel",
    ),
    path(
        "runs/<int:pk>/resume/",
        api.TrainingRunActionAPI.as_view(action="resume"),
        name="api-run-resume",
    ),
    path("runs/<int:pk>/metrics/", api.TrainingRunMetricsAPI.as_view(), name="api-run-metrics"),
    path("scorings/", api.RewardScoringListAPI.as_view(), name="api-scoring-list"),
    path(
        "scorings/<int:pk>/cancel/",
        api.RewardScoringActionAPI.as_view(action="cancel"),
        name="api-scoring-cancel",
    ),
    path(
        "scorings/<int:pk>/resume/",
        api.RewardScoringActionAPI.as_view(action="resume"),
        name="api-scoring-resume",
    ),
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
