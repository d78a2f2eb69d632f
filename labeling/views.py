"""Annotator and admin pages. The labeling page swaps the next task in place with htmx."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.rendering import render_markdown
from config.roles import ADMIN, ANNOTATOR, AuthenticatedRequest, role_required
from labeling import hooks, review, selectors, services
from labeling.forms import LabelingQueueForm, SubmissionForm
from labeling.models import Assignment, LabelingQueue, Verdict


@role_required(ANNOTATOR, ADMIN)
@require_GET
def queue_index(request: AuthenticatedRequest) -> HttpResponse:
    queues = selectors.queue_counts(
        queues=selectors.queue_list(user=request.user), user=request.user
    )
    rejected = review.annotator_rejected_count(user=request.user)  # type: ignore[arg-type]
    return render(request, "labeling/index.html", {"queues": queues, "rejected": rejected})


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def queue_create(request: AuthenticatedRequest) -> HttpResponse:
    initial = {"jobs": request.GET.getlist("job")} if "job" in request.GET else {}
    form = LabelingQueueForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            queue = services.labeling_queue_create(
                jobs=list(data["jobs"]),
                settings=services.QueueSettings(
                    name=data["name"],
                    mode=data["mode"],
                    ask_scores=data["ask_scores"],
                    overlap=data["overlap"],
                    pairs_per_prompt=data["pairs_per_prompt"],
                    guidelines=data["guidelines"],
                    lease_seconds=data["lease_minutes"] * 60,
                    seed=data["seed"],
                ),
                user=request.user,
            )
        except services.LabelingError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Created {queue.name} with {queue.tasks.count()} tasks.")
            return redirect("labeling:queue-dashboard", pk=queue.pk)
    return render(request, "labeling/queue_form.html", {"form": form})


def _task_context(request: AuthenticatedRequest, queue: LabelingQueue) -> dict[str, object]:
    assignment = services.task_claim_next(queue=queue, user=request.user)
    context: dict[str, object] = {
        "queue": queue,
        "assignment": assignment,
        "progress": selectors.queue_progress(queue=queue, user=request.user),
        "can_undo": selectors.ranking_list(user=request.user, queue=queue)
        .filter(annotator=request.user)
        .exists(),
    }
    if assignment is not None:
        candidates = selectors.task_candidates(task=assignment.task)
        context["prompt"] = assignment.task.prompt
        # Answers are named by their per-task alias (A, B, ...) in the page and the form,
        # never by database ids.
        context["candidates"] = list(zip(services.ALIASES, candidates, strict=False))
        context["ranks"] = range(1, len(candidates) + 1)
        context["scores"] = range(1, 8)
        context["flags"] = services.FLAGS
        # A task taken back (undo, or to relabel after review) comes back with what the
        # annotator had written: their comment, flags and ideal response.
        context["previous"] = selectors.label_last_given(task=assignment.task, user=request.user)
    return context


@role_required(ANNOTATOR, ADMIN)
@require_GET
def label(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    queue = selectors.queue_get(user=request.user, pk=pk)
    context = _task_context(request, queue)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "labeling/_task.html", context)
    context["guidelines"] = render_markdown(queue.guidelines)
    return render(request, "labeling/label.html", context)


def _order_from_post(
    data: QueryDict, candidates: list[int], choice: str
) -> tuple[list[list[int]], bool]:
    """The best-first order a form post describes (fields named by alias: ``rank_A``);
    ``both_bad`` is a tie marked as such."""
    if choice in ("a", "b", "tie", "both_bad"):
        if len(candidates) != 2:
            raise services.LabelingError("this task has more than two completions: rank them")
        a, b = candidates
        return {
            "a": ([[a], [b]], False),
            "b": ([[b], [a]], False),
            "tie": ([[a, b]], False),
            "both_bad": ([[a, b]], True),
        }[choice]
    aliases = dict(zip(services.ALIASES, candidates, strict=False))
    if order := data.get("order"):
        try:
            groups = json.loads(order)
            return [[aliases[a] for a in group] for group in groups], False
        except (json.JSONDecodeError, KeyError, TypeError):
            raise services.LabelingError("the ranking could not be read") from None
    ranks: dict[int, list[int]] = {}
    for alias, completion_id in aliases.items():
        raw = data.get(f"rank_{alias}", "")
        if not raw.isdigit():
            raise services.LabelingError("give every completion a rank")
        ranks.setdefault(int(raw), []).append(completion_id)
    return [ranks[r] for r in sorted(ranks)], data.get("both_bad") == "on"


def _scores_from_post(data: QueryDict, candidates: list[int]) -> dict[str, int]:
    """The scores given; a score that is not a whole number is refused, not dropped (the
    service checks the range)."""
    scores = {}
    for alias, completion_id in zip(services.ALIASES, candidates, strict=False):
        raw = data.get(f"score_{alias}", "").strip()
        if not raw:
            continue
        try:
            scores[str(completion_id)] = int(raw)
        except ValueError:
            raise services.LabelingError("scores must be whole numbers") from None
    return scores


@role_required(ANNOTATOR, ADMIN)
@require_POST
def submit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    queue = selectors.queue_get(user=request.user, pk=pk)
    form = SubmissionForm(request.POST)
    if not form.is_valid():
        return _after_action(request, queue, error="The submission was incomplete; try again.")
    assignment = selectors.assignment_get(user=request.user, pk=form.cleaned_data["assignment"])
    if assignment.task.queue_id != queue.pk:
        return _after_action(request, queue, error="That task belongs to another queue.")
    choice = form.cleaned_data["choice"] or "rank"
    try:
        if choice == "skip":
            services.task_skip(assignment=assignment)
        else:
            candidates = [c.pk for c in selectors.task_candidates(task=assignment.task)]
            verdict = ""
            if choice in Verdict.values:
                order, both_bad, verdict = [candidates], False, choice
            elif queue.mode == LabelingQueue.Mode.SINGLE:
                raise services.LabelingError(
                    "verdict: say whether the answer is good or bad", field="verdict"
                )
            else:
                order, both_bad = _order_from_post(request.POST, candidates, choice)
            elapsed = timezone.now() - assignment.claimed_at
            services.ranking_submit(
                assignment_id=assignment.pk,
                user=request.user,
                submission=services.Submission(
                    order=order,
                    scores=_scores_from_post(request.POST, candidates),
                    both_bad=both_bad,
                    comment=form.cleaned_data["comment"],
                    flags=tuple(form.cleaned_data["flags"]),
                    time_spent_ms=int(elapsed.total_seconds() * 1000),
                    demonstration=form.cleaned_data["demonstration"],
                    verdict=verdict,
                ),
            )
    except services.LabelingError as exc:
        return _after_action(request, queue, error=str(exc))
    return _after_action(request, queue)


@role_required(ANNOTATOR, ADMIN)
@require_POST
def undo(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    queue = selectors.queue_get(user=request.user, pk=pk)
    if services.ranking_undo_last(queue=queue, user=request.user) is None:
        return _after_action(request, queue, error="There is nothing to undo.")
    return _after_action(request, queue, info="Undone: the task is back for you to label again.")


def _after_action(
    request: AuthenticatedRequest, queue: LabelingQueue, *, error: str = "", info: str = ""
) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        context = _task_context(request, queue)
        context.update(error=error, info=info)
        return render(request, "labeling/_task.html", context)
    if error:
        messages.error(request, error)
    elif info:
        messages.info(request, info)
    return redirect(reverse("labeling:queue-label", args=[queue.pk]))


def _agreement_trend(days: list[selectors.AnnotatorDay]) -> dict[str, object]:
    """Agreement with the majority per annotator per day, as uPlot series (None: no data)."""
    xs = sorted({d.day for d in days})
    if xs:
        # An empty day on each side: a time axis needs a span, and one day alone has none.
        xs = [xs[0] - timedelta(days=1), *xs, xs[-1] + timedelta(days=1)]
    names = sorted({d.username for d in days})
    rate = {(d.username, d.day): d.majority_rate for d in days}
    return {
        "days": [datetime.combine(x, time(12), tzinfo=UTC).timestamp() for x in xs],
        "annotators": names,
        "rates": [[rate.get((n, x)) for x in xs] for n in names],
    }


@role_required(ADMIN)
@require_GET
def dashboard(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    queue = selectors.queue_get(user=request.user, pk=pk)
    board = selectors.queue_dashboard(queue=queue, user=request.user)
    chart = {
        "hours": [h for h, _ in board.per_hour],
        "per_hour": [n for _, n in board.per_hour],
        "annotators": [a.username for a in board.annotators],
        "done": [a.done for a in board.annotators],
        "majority": [a.majority_rate for a in board.annotators],
        "gold": [a.gold_rate for a in board.annotators],
    }
    chart["trend"] = _agreement_trend(board.days)
    context = {
        "queue": queue,
        "board": board,
        "chart": chart,
        "days": board.days,
        # Sections that apps above labeling add (training: reward-model assistance).
        "panels": hooks.queue_dashboard_panels(request=request, queue=queue),
        "active_claims": Assignment.objects.filter(
            task__queue=queue, status=Assignment.Status.ACTIVE, expires_at__gt=timezone.now()
        ).count(),
    }
    return render(request, "labeling/dashboard.html", context)
