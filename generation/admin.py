from __future__ import annotations

from django.contrib import admin

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


@admin.register(Completion)
class CompletionAdmin(RecordAdmin):
    """Read-only: labels point to completions, stored exactly as generated or imported."""

    list_display = ["job", "prompt", "sample_index", "finish_reason"]
    list_filter = ["job"]
    raw_id_fields = ["prompt", "job", "model"]
