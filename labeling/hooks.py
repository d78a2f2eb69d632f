"""Neutral hooks through which an app above labeling adds to a queue's dashboard.

labeling never imports the apps above it (see the layers contract in pyproject.toml). What
it lets them fill in:

- *reference scores*: a model's score per completion of a queue, which the dashboard
  compares with the annotators' choices (``training`` registers its reward-model
  assistance);
- *dashboard panels*: HTML sections added to the bottom of a queue's dashboard (the
  assistance form and its AI-labeler button).

The other hooks are plain fields and services of labeling itself: a task's ``priority`` with
the queue's ``task_order`` (``services.task_priorities_set``), an assignment that does not
count toward the overlap (``services.assignment_uncounted_open``), and the ``ai-labeler``
group that marks an AI's labels (``models.AI_LABELER_GROUP``).

Providers register in their ``AppConfig.ready``; without any, the dashboard shows neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest

from labeling.models import LabelingQueue


@dataclass(frozen=True)
class ReferenceScores:
    """A model's scores for the completions of a queue: higher means better."""

    name: str  # who scored, as the dashboard names it
    scores: dict[int, float]  # completion id -> score


ReferenceScoresProvider = Callable[[LabelingQueue], ReferenceScores | None]
DashboardPanel = Callable[[HttpRequest, LabelingQueue], str]

_reference_scores: list[ReferenceScoresProvider] = []
_dashboard_panels: list[DashboardPanel] = []


def reference_scores_register(provider: ReferenceScoresProvider) -> None:
    """Add a source of reference scores (idempotent: ``ready()`` may run twice in tests)."""
    if provider not in _reference_scores:
        _reference_scores.append(provider)


def dashboard_panel_register(panel: DashboardPanel) -> None:
    """Add a dashboard section: ``panel(request, queue)`` returns safe HTML (or "")."""
    if panel not in _dashboard_panels:
        _dashboard_panels.append(panel)


def queue_reference_scores(*, queue: LabelingQueue) -> ReferenceScores | None:
    """The first registered provider's scores for the queue, None when none has any."""
    for provider in _reference_scores:
        scores = provider(queue)
        if scores is not None:
            return scores
    return None


def queue_dashboard_panels(*, request: HttpRequest, queue: LabelingQueue) -> list[str]:
    """Every registered panel's HTML for the queue's dashboard, in registration order."""
    return [html for panel in _dashboard_panels if (html := panel(request, queue))]
