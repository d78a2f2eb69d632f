"""Template filters: ``{% load preflab %}``."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from config.rendering import render_answer

register = template.Library()


@register.filter(name="answer")
def answer_filter(text: str) -> SafeString:
    """Model output or imported text as sanitised Markdown; its raw HTML shows as text."""
    return render_answer(text)
