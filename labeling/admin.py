from __future__ import annotations

from django.contrib import admin

from labeling.models import (
    Assignment,
    Comparison,
    Demonstration,
    LabelingQueue,
    LabelingTask,
    Ranking,
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
admin.site.register(Ranking)
admin.site.register(Comparison)
admin.site.register(Demonstration)
