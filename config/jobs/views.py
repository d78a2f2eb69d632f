"""The pages' cancel and resume buttons, for every kind of background job."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from config.jobs.lifecycle import Lifecycle
from config.jobs.models import BackgroundJob, JobStatus

J = TypeVar("J", bound=BackgroundJob)


def job_action_response(
    request: HttpRequest,
    job: J,
    *,
    lifecycle: Lifecycle[J],
    action: str,
    stopping: str,
    resumed: str,
    fragment: str,
    context: Callable[[J], Mapping[str, Any]],
    back: Callable[[J], str] | None = None,
) -> HttpResponse:
    """Cancel or resume ``job`` from a button and answer the page.

    The outcome goes to the messages ("Cancelled.", else ``stopping`` while a running row
    winds down; ``resumed``), a refusal with its reason. An htmx post gets ``fragment``
    rendered with ``context(job)``; a plain post is redirected to ``back(job)`` (default:
    the row's own page).
    """
    try:
        job = lifecycle.act(action, job)
    except lifecycle.error as exc:
        messages.error(request, str(exc))
    else:
        if action == "resume":
            messages.success(request, resumed)
        else:
            stopped = job.status == JobStatus.CANCELLED
            messages.info(request, "Cancelled." if stopped else stopping)
    if request.htmx:  # type: ignore[attr-defined]
        job.refresh_from_db()
        return render(request, fragment, context(job))
    return redirect(back(job) if back is not None else job)
