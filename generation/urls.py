from __future__ import annotations

from django.urls import path

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
    path("jobs/<int:pk>/cancel/", views.job_action, {"action": "cancel"}, name="job-cancel"),
    path("jobs/<int:pk>/resume/", views.job_action, {"action": "resume"}, name="job-resume"),
]
