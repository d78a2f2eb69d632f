from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from config.admin import RecordAdmin
from generation.models import Completion, GenerationJob, PolicyModel, Prompt, PromptSet
from generation.services import GenerationError, policy_model_validate


class PolicyModelAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    """The admin edits rows directly: hold them to the same rules as the page and the API."""

    server_url = forms.CharField(required=False, max_length=200)

    class Meta:
        model = PolicyModel
        fields = [
            "name",
            "backend",
            "source",
            "server_url",
            "extra_server_urls",
            "server_model",
            "use_chat_template",
            "tensor_parallel_size",
            "parent",
            "description",
            "created_by",
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        extra = data.get("extra_server_urls") or []
        if not isinstance(extra, list) or not all(isinstance(url, str) for url in extra):
            self.add_error("extra_server_urls", "a list of server URLs")
            return data
        try:
            policy_model_validate(
                backend=data.get("backend", ""),
                source=data.get("source", ""),
                server_url=data.get("server_url", ""),
                server_model=data.get("server_model", ""),
                extra_server_urls=extra,
                tensor_parallel_size=data.get("tensor_parallel_size") or 1,
            )
        except GenerationError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(PolicyModel)
class PolicyModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = PolicyModelAdminForm
    list_display = ["name", "backend", "source", "server_url", "server_count", "created_at"]
    search_fields = ["name", "source"]

    @admin.display(description="servers")
    def server_count(self, obj: PolicyModel) -> int:
        return len(obj.server_urls)


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
