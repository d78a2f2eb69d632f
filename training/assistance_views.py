"""A queue dashboard's AI assistance: its panel (through labeling's dashboard hook) with the
reward-model assistance and the constitution labeler, and their admin actions, served under
the queue's labeling URLs."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from config.roles import ADMIN, AuthenticatedRequest, role_required, user_is_admin
from labeling import selectors as labeling_selectors
from labeling.models import LabelingQueue
from labeling.services import LabelingError
from training import assistance, constitution, selectors
from training.forms import ConstitutionLabelForm, PrincipleSetForm, QueueAssistForm
from training.models import PrincipleSet


def queue_assistance_panel(request: HttpRequest, queue: LabelingQueue) -> SafeString:
    """labeling's dashboard hook: the assistance section (admins only, as the dashboard)."""
    if not user_is_admin(request.user):
        return mark_safe("")
    assist = selectors.queue_assistance_get(queue=queue)
    form = QueueAssistForm(
        initial={
            "reward_run": assist.reward_run_id if assist else None,
            "task_order": queue.task_order,
        }
    )
    current = constitution.principle_set_current(queue=queue)
    html = render_to_string(
        "training/_queue_assistance.html",
        {
            "queue": queue,
            "assistance": assist,
            "assist_form": form,
            **_constitution_context(queue, current),
        },
        request=request,
    )
    return mark_safe(html)  # a rendered template: autoescaped already


@role_required(ADMIN)
@require_POST
def queue_assist(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Choose the queue's assisting reward run and task order (scores the queue if needed)."""
    queue = labeling_selectors.queue_get(user=request.user, pk=pk)
    form = QueueAssistForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return redirect("labeling:queue-dashboard", pk=queue.pk)
    try:
        assist = assistance.queue_assistance_set(
            queue=queue,
            reward_run=form.cleaned_data["reward_run"],
            task_order=form.cleaned_data["task_order"],
            user=request.user,
        )
    except LabelingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, assist.note or "Reward-model assistance is off.")
    return redirect("labeling:queue-dashboard", pk=queue.pk)


@role_required(ADMIN)
@require_POST
def queue_ai_label(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Queue the AI labeler: the queue's reward model labels every task as an extra annotator."""
    queue = labeling_selectors.queue_get(user=request.user, pk=pk)
    try:
        assistance.queue_ai_label_start(queue=queue, user=request.user)
    except LabelingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"The AI labeler ({selectors.queue_assistance_run(queue=queue)}) will label this "
            "queue on the worker.",
        )
    return redirect("labeling:queue-dashboard", pk=queue.pk)


# --- the constitution labeler ---------------------------------------------------------------


def _principles_initial(current: PrincipleSet | None) -> dict[str, str]:
    """The form starts from the current version, to be edited into the next."""
    if current is None:
        return {}
    return {"name": current.name, "text": current.text}


def _constitution_context(queue: LabelingQueue, current: PrincipleSet | None) -> dict[str, object]:
    return {
        "principles": current,
        "principle_versions": selectors.queue_principle_sets(queue=queue).count(),
        "principles_form": PrincipleSetForm(initial=_principles_initial(current)),
        "label_form": ConstitutionLabelForm(),
        "ai_agreements": selectors.queue_ai_agreements(queue=queue),
    }


@role_required(ADMIN)
@require_POST
def queue_principles(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Save the queue's constitution (a new version when it changed); 400 with the form's
    errors on bad input."""
    queue = labeling_selectors.queue_get(user=request.user, pk=pk)
    form = PrincipleSetForm(request.POST)
    if form.is_valid():
        try:
            saved = constitution.principle_set_save(
                queue=queue,
                name=form.cleaned_data["name"],
                text=form.cleaned_data["text"],
                user=request.user,
            )
        except LabelingError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Constitution saved: {saved}.")
            return redirect("labeling:queue-dashboard", pk=queue.pk)
    return render(
        request,
        "training/constitution_form.html",
        {"queue": queue, "principles_form": form},
        status=400,
    )


@role_required(ADMIN)
@require_POST
def queue_constitution_label(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Queue the constitution labeler: the chosen model judges every task of the queue by
    its current constitution, as an extra (AI) annotator."""
    queue = labeling_selectors.queue_get(user=request.user, pk=pk)
    form = ConstitutionLabelForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "training/constitution_form.html",
            {"queue": queue, "label_form": form},
            status=400,
        )
    try:
        labeler = constitution.constitution_label_start(
            queue=queue, judge_model=form.cleaned_data["judge_model"], user=request.user
        )
    except LabelingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{labeler.user.username} will label this queue on the worker.")
    return redirect("labeling:queue-dashboard", pk=queue.pk)
