"""Admin helpers shared by the apps."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class RecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The admin of a record that labels or snapshots point to: staff may look, never edit.

    Prompt and completion texts, and the labels themselves, are facts kept byte for byte;
    changing one in place would change what every label and snapshot means. No add, change
    or delete: the change page shows the fields read-only.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
