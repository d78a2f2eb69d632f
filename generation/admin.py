from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from config.admin import RecordAdmin
from generation.models import Completion, GenerationJob, PolicyModel, Prompt, PromptSet


@admin.register(PolicyModel)
class PolicyModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "backend", "source", "server_url", "created_at"]
    search_fields = ["name", "source"]


@admin.register(PromptSet)
class PromptSetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "created_at"]
    search_fields = ["name"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a set deletes its prompts, and the labels pointing to them with them:
        # only an empty set goes (one at a time, so no bulk action can skip the check).
        return obj is not None and not obj.prompts.exists()


@admin.register(Prompt)
class PromptAdmin(RecordAdmin):
    """Read-only: labels point to prompts, whose text is stored exactly as imported."""

    list_display = ["prompt_set", "position", "text"]
    list_filter = ["prompt_set"]
    search_fields = ["text"]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["__str__", "status", "prompts_done", "prompts_total", "created_at"]
    list_filter = ["status", "source"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The same for a job and its completions: only a job without completions goes.
        return obj is not None and not obj.completions.exists()


@admin.register(Completion)
class CompletionAdmin(RecordAdmin):
    """Read-only: labels point to completions, stored exactly as generated or imported."""

    list_display = ["job", "prompt", "sample_index", "finish_reason"]
    list_filter = ["job"]
    raw_id_fields = ["prompt", "job", "model"]
