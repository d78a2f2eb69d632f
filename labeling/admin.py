from __future__ import annotations

from typing import Any

from django.contrib import admin

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
    raw_id_fields = ["prompt"]


admin.site.register(Assignment)


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Labels are the record: they change only through the labeling services, which append
    a version for every change. The admin shows them and changes nothing."""

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


for model in (Ranking, RankingVersion, Comparison, Demonstration):
    admin.site.register(model, ReadOnlyAdmin)
