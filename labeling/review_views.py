"""The review page of a queue (leads) and the rejected-label notices (annotators)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from config.roles import ADMIN, ANNOTATOR, AuthenticatedRequest, role_required
from labeling import review, search, services
from labeling.models import LabelingQueue, Ranking

PAGE_SIZE = 30


def _row(label: Ranking) -> dict[str, object]:
    letters = search.task_letters(label.task)
    slots = sorted(label.task.slots.all(), key=lambda slot: slot.slot)
    return {
        "view": search.label_view(label, letters),
        "answers": [(letters[slot.completion_id], slot.completion.text) for slot in slots],
    }


@role_required(ADMIN)
@require_GET
def review_page(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    queue = get_object_or_404(LabelingQueue, pk=pk)
    show = request.GET.get("show", "all")
    if show not in review.REVIEW_FILTERS:
        show = "all"
    labels = review.review_queue_labels(queue=queue, show=show)
    page = Paginator(labels, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "labeling/review.html",
        {
            "queue": queue,
            "show": show,
            "filters": review.REVIEW_FILTERS.items(),
            "page": page,
            "page_query": f"show={show}",
            "rows": [_row(label) for label in page.object_list],
        },
    )


@role_required(ADMIN)
@require_POST
def review_label(request: AuthenticatedRequest, pk: int, ranking_id: int) -> HttpResponse:
    """Accept or reject one label (htmx swaps its row; a plain form returns to the page)."""
    queue = get_object_or_404(LabelingQueue, pk=pk)
    ranking = get_object_or_404(Ranking, pk=ranking_id, task__queue=queue)
    version = request.POST.get("version", "")
    error = ""
    try:
        review.label_review(
            ranking=ranking,
            status=request.POST.get("status", ""),
            reason=request.POST.get("reason", ""),
            reviewer=request.user,  # type: ignore[arg-type]
            version=int(version) if version.isdigit() and len(version) < 10 else -1,
        )
    except review.ReviewError as exc:
        error = str(exc)
    if not request.htmx:  # type: ignore[attr-defined]
        if error:
            messages.error(request, error)
        return redirect(reverse("labeling:queue-review", args=[queue.pk]))
    label = (
        review.rankings_with_review(Ranking.objects.filter(pk=ranking.pk))
        .select_related("task__prompt", "annotator")
        .prefetch_related("task__slots__completion")
        .first()
    )
    if label is None:
        return HttpResponse(status=404)
    # As on the labeling page, an htmx form shows its error in place (the row, re-rendered).
    return render(
        request, "labeling/_review_row.html", {"queue": queue, "row": _row(label), "error": error}
    )


@role_required(ANNOTATOR, ADMIN)
@require_GET
def my_rejections(request: AuthenticatedRequest) -> HttpResponse:
    """The annotator's labels a lead rejected, with the reasons."""
    rejections = review.annotator_rejections(user=request.user)  # type: ignore[arg-type]
    return render(request, "labeling/rejections.html", {"rejections": rejections})


@role_required(ANNOTATOR, ADMIN)
@require_POST
def relabel(request: AuthenticatedRequest, ranking_id: int) -> HttpResponse:
    """Take back one's own rejected (or any current) label and label the task again."""
    assignment = services.ranking_take_back(ranking_id=ranking_id, user=request.user)  # type: ignore[arg-type]
    if assignment is None:
        raise Http404
    messages.info(request, "The task is back: label it again.")
    return redirect(reverse("labeling:queue-label", args=[assignment.task.queue_id]))
