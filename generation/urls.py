from __future__ import annotations

from django.urls import path

from config.jobs.urls import job_action_urls
from generation import views

app_name = "generation"
urlpatterns = [
    path("models/", views.model_list, name="model-list"),
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path("prompt-sets/", views.promptset_list, name="promptset-list"),
    path("prompt-sets/<int:pk>/", views.promptset_detail, name="promptset-detail"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/import/", views.job_import, name="job-import"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    *job_action_urls("jobs/<int:pk>/", views.job_action, "job"),
]
