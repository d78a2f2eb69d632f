from __future__ import annotations

from django.urls import path

from labeling import views

app_name = "labeling"
urlpatterns = [
    path("", views.queue_index, name="index"),
    path("queues/new/", views.queue_create, name="queue-create"),
    path("queues/<int:pk>/", views.label, name="queue-label"),
    path("queues/<int:pk>/submit/", views.submit, name="queue-submit"),
    path("queues/<int:pk>/undo/", views.undo, name="queue-undo"),
    path("queues/<int:pk>/dashboard/", views.dashboard, name="queue-dashboard"),
]
