"""The cancel and resume routes of a kind of background job, for its pages and its API."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from django.views import View


def job_action_urls(route: str, view: Any, name: str) -> list[URLPattern]:
    """The ``cancel/`` and ``resume/`` routes under ``route`` (``"jobs/<int:pk>/"``), named
    ``<name>-cancel`` and ``<name>-resume``: an API view class gets ``action`` through
    ``as_view``, a page's view function as a keyword argument."""
    actions = ("cancel", "resume")
    if isinstance(view, type) and issubclass(view, View):
        return [path(f"{route}{a}/", view.as_view(action=a), name=f"{name}-{a}") for a in actions]
    return [path(f"{route}{a}/", view, {"action": a}, name=f"{name}-{a}") for a in actions]
