from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from config.admin import RecordAdmin
from labeling.models import (
    Assignment,
    Comparison,
    Demonstration,
    LabelingQueue,
    LabelingTask,
    Ranking,
    RankingVersion,
)


@admin.register(LabelingQueue)
class LabelingQueueAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "mode", "overlap", "is_active", "created_at"]
    filter_horizontal = ["annotators"]


@admin.register(LabelingTask)
class LabelingTaskAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "queue", "position", "is_gold"]
    list_filter = ["queue", "is_gold"]
    # The prompt a task shows is what its labels are about: never re-pointed.
    readonly_fields = ["queue", "prompt"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # tasks are built with their queue (labeling_queue_create)


admin.site.register(Assignment)

# Labels are the record: they change only through the labeling services, which append a
# version for every change. The admin shows them and changes nothing.
for model in (Ranking, RankingVersion, Comparison, Demonstration):
    admin.site.register(model, RecordAdmin)
