from __future__ import annotations

from django.urls import path

from config.jobs.urls import job_action_urls
from generation import api, api_schema  # noqa: F401 - api_schema documents the views

urlpatterns = [
    path("models/", api.PolicyModelListAPI.as_view(), name="api-model-list"),
    path("models/<int:pk>/", api.PolicyModelDetailAPI.as_view(), name="api-model-detail"),
    path("prompt-sets/", api.PromptSetListAPI.as_view(), name="api-promptset-list"),
    path("prompt-sets/<int:pk>/", api.PromptSetDetailAPI.as_view(), name="api-promptset-detail"),
    path(
        "prompt-sets/<int:pk>/prompts/",
        api.PromptSetPromptsAPI.as_view(),
        name="api-promptset-prompts",
    ),
    path(
        "prompt-sets/<int:pk>/import/",
        api.PromptSetImportAPI.as_view(),
        name="api-promptset-import",
    ),
    path("jobs/", api.GenerationJobListAPI.as_view(), name="api-job-list"),
    path("jobs/import/", api.GenerationJobImportAPI.as_view(), name="api-job-import"),
    path("jobs/<int:pk>/", api.GenerationJobDetailAPI.as_view(), name="api-job-detail"),
    *job_action_urls("jobs/<int:pk>/", api.GenerationJobActionAPI, "api-job"),
    path(
        "jobs/<int:pk>/completions/",
        api.GenerationJobCompletionsAPI.as_view(),
        name="api-job-completions",
    ),
]
