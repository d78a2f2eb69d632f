"""HTML views of the iterated loop: blind evaluations, their leaderboards, next rounds, and
the rounds timeline. Researchers and admins read; admins create. Annotators get 403s: they
must never learn which models they compared or how the models did."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.roles import ADMIN, RESEARCHER, AuthenticatedRequest, role_required, user_is_admin
from training import evaluations, rounds, selectors
from training.forms import CompareWithParentForm, EvaluationForm, NextRoundForm
from training.models import Evaluation, TrainingRun
from training.runs import RunError


def _add_error(form: Any, exc: RunError) -> None:
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, str(exc))


# --- evaluations --------------------------------------------------------------------------------


@role_required(RESEARCHER, write=ADMIN)
@require_http_methods(["GET", "POST"])
def evaluation_list(request: AuthenticatedRequest) -> HttpResponse:
    """The evaluations, and (admins) the form that creates one."""
    form: EvaluationForm | None = None
    status = 200
    if request.method == "POST":
        form = EvaluationForm(request.POST)
        if form.is_valid():
            try:
                evaluation = evaluations.evaluation_create(user=request.user, **form.cleaned_data)
            except RunError as exc:
                _add_error(form, exc)
            else:
                messages.success(request, f"Generating answers for {evaluation.name}.")
                return redirect(evaluation)
        status = 400
    elif user_is_admin(request.user):
        form = EvaluationForm()
    page = Paginator(
        selectors.evaluation_list(user=request.user).prefetch_related("entries__model"), 50
    ).get_page(request.GET.get("page"))
    return render(
        request, "training/evaluation_list.html", {"page": page, "form": form}, status=status
    )


def _detail_context(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "evaluation": evaluation,
        "entries": selectors.evaluation_entries(evaluation=evaluation),
        "labels": selectors.evaluation_label_count(evaluation=evaluation),
    }


@role_required(RESEARCHER)
@require_GET
def evaluation_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    evaluation = get_object_or_404(selectors.evaluation_list(user=request.user), pk=pk)
    # The beat task advances evaluations every 30 s; the page need not wait for it.
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)
    context = _detail_context(evaluation)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "training/_evaluation_status.html", context)
    results = selectors.evaluation_results(evaluation=evaluation)
    context.update(
        results=results,
        chart=selectors.evaluation_chart(results),
        matrix_rows=list(zip(results.leaderboard, results.matrix, strict=True)),
    )
    return render(request, "training/evaluation_detail.html", context)


# --- next round and compare with the parent -------------------------------------------------------


def _policy_run(request: HttpRequest, pk: int) -> TrainingRun:
    return get_object_or_404(selectors.training_run_list(user=request.user), pk=pk)


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def run_next_round(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    run = _policy_run(request, pk)
    defaults = rounds.round_defaults(run=run)
    if request.method == "POST":
        form = NextRoundForm(request.POST)
        if form.is_valid():
            try:
                rounds.round_create(run=run, user=request.user, **form.cleaned_data)
            except RunError as exc:
                _add_error(form, exc)
            else:
                messages.success(
                    request,
                    "Sampling from the new model; its labeling queue opens when the job is done.",
                )
                return redirect("training:round-list")
    else:
        initial = {
            "prompt_set": defaults.get("prompt_set"),
            "k": defaults["k"],
            "max_new_tokens": defaults["max_new_tokens"],
        }
        form = NextRoundForm(initial=initial)
    context = {"run": run, "form": form, "previous_queue": defaults["previous_queue"]}
    return render(
        request,
        "training/round_create.html",
        context,
        status=400 if form.is_bound else 200,
    )


@role_required(ADMIN)
@require_POST
def run_compare_parent(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    run = _policy_run(request, pk)
    form = CompareWithParentForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return redirect(run)
    try:
        evaluation = evaluations.evaluation_create_for_run(
            run=run, user=request.user, **form.cleaned_data
        )
    except RunError as exc:
        messages.error(request, str(exc))
        return redirect(run)
    messages.success(request, f"Generating answers for {evaluation.name}.")
    return redirect(evaluation)


# --- rounds -------------------------------------------------------------------------------------


@role_required(RESEARCHER)
@require_GET
def round_list(request: AuthenticatedRequest) -> HttpResponse:
    """The rounds timeline; advances rounds and evaluations whose jobs have finished."""
    rounds.loops_advance()
    return render(request, "training/round_list.html", {"timeline": selectors.rounds_timeline()})
