"""The pages' cancel and resume buttons, for every kind of background job."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from config.jobs.lifecycle import Lifecycle
from config.jobs.models import BackgroundJob, JobStatus

J = TypeVar("J", bound=BackgroundJob)


def job_action_view(
    lifecycle: Lifecycle[J],
    get_job: Callable[[Any, int], J],
    fragment: str,
    context: Callable[[J], Mapping[str, Any]],
    back: Callable[[J], str] | None = None,
) -> Callable[..., HttpResponse]:
    """The view behind a kind's cancel and resume buttons (``POST``, routed with ``action``
    by :func:`config.jobs.urls.job_action_urls`): ``get_job(request, pk)`` finds the row
    the user may see (else a 404), then :func:`job_action_response` answers."""

    @require_POST
    def view(request: HttpRequest, pk: int, action: str) -> HttpResponse:
        job = get_job(request, pk)
        return job_action_response(
            request, job, lifecycle, action=action, fragment=fragment, context=context, back=back
        )

    return view


def job_action_response(
    request: HttpRequest,
    job: J,
    lifecycle: Lifecycle[J],
    *,
    action: str,
    fragment: str,
    context: Callable[[J], Mapping[str, Any]],
    back: Callable[[J], str] | None = None,
) -> HttpResponse:
    """Cancel or resume ``job`` from a button and answer the page.

    The outcome goes to the messages ("Cancelled.", else the kind's ``CANCELLING`` while a
    running row winds down; its ``RESUMED``), a refusal with its reason. An htmx post gets
    ``fragment`` rendered with ``context(job)``; a plain post is redirected to ``back(job)``
    (default: the row's own page).
    """
    try:
        job = lifecycle.act(action, job)
    except lifecycle.error as exc:
        messages.error(request, str(exc))
    else:
        if action == "resume":
            messages.success(request, job.RESUMED)
        else:
            stopped = job.status == JobStatus.CANCELLED
            messages.info(request, "Cancelled." if stopped else job.CANCELLING)
    if request.htmx:  # type: ignore[attr-defined]
        job.refresh_from_db()
        return render(request, fragment, context(job))
    if back is not None:
        return redirect(back(job))
    # Kinds called without ``back`` have a page; BackgroundJob itself declares none.
    return redirect(job.get_absolute_url())  # type: ignore[attr-defined]
