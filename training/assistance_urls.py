"""The assistance actions, mounted under ``labeling/`` beside the queue's dashboard (their URLs
are the queue's), but served by training, which owns the assistance."""

from __future__ import annotations

from django.urls import path

from training import assistance_views

app_name = "assistance"
urlpatterns = [
    path("queues/<int:pk>/assist/", assistance_views.queue_assist, name="queue-assist"),
    path("queues/<int:pk>/ai-label/", assistance_views.queue_ai_label, name="queue-ai-label"),
    path("queues/<int:pk>/principles/", assistance_views.queue_principles, name="queue-principles"),
    path(
        "queues/<int:pk>/constitution-label/",
        assistance_views.queue_constitution_label,
        name="queue-constitution-label",
    ),
]
