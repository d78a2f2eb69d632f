"""HTML views: validate with a form, call one service or selector, render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRefresh

from config.jobs.views import job_action_view
from config.roles import ADMIN, RESEARCHER, AuthenticatedRequest, role_required, user_is_admin
from generation import importers, selectors, services
from generation.forms import (
    CompletionImportForm,
    GenerationJobForm,
    PolicyModelForm,
    PromptImportForm,
    PromptSetForm,
)
from generation.models import GenerationJob, PromptSet


def _format(form_format: str, filename: str) -> str:
    return importers.detect_format(filename) if form_format == "auto" else form_format


# --- models -----------------------------------------------------------------------------------


@role_required(RESEARCHER, write=ADMIN)
@require_http_methods(["GET", "POST"])
def model_list(request: AuthenticatedRequest) -> HttpResponse:
    form = PolicyModelForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                model = services.policy_model_create(user=request.user, **form.cleaned_data)
            except services.GenerationError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Registered model {model.name}.")
                return redirect(model)
    models = selectors.policy_model_list(user=request.user)
    return render(request, "generation/model_list.html", {"models": models, "form": form})


@role_required(RESEARCHER)
@require_GET
def model_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    models = selectors.policy_model_list(user=request.user).select_related(
        "training_run__snapshot", "training_run__base_model"
    )
    model = get_object_or_404(models, pk=pk)
    jobs = selectors.generation_job_list(user=request.user).filter(model=model)[:50]
    return render(request, "generation/model_detail.html", {"model": model, "jobs": jobs})


# --- prompt sets ------------------------------------------------------------------------------


@role_required(RESEARCHER, write=ADMIN)
@require_http_methods(["GET", "POST"])
def promptset_list(request: AuthenticatedRequest) -> HttpResponse:
    form = PromptSetForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form.is_valid():
            prompt_set = _create_set_with_import(request, form)
            if prompt_set is not None:
                return redirect(prompt_set)
    sets = selectors.prompt_set_list(user=request.user)
    return render(request, "generation/promptset_list.html", {"sets": sets, "form": form})


def _create_set_with_import(request: AuthenticatedRequest, form: PromptSetForm) -> PromptSet | None:
    from django.db import transaction

    data = form.cleaned_data
    try:
        with transaction.atomic():
            prompt_set = services.prompt_set_create(
                name=data["name"], description=data["description"], user=request.user
            )
            upload = data.get("file")
            if upload is not None:
                result = services.prompt_set_import(
                    prompt_set=prompt_set,
                    data=upload.read(),
                    format=_format(data["format"], upload.name),
                )
                messages.success(request, _import_message(result))
    except (services.GenerationError, importers.ImportFileError) as exc:
        form.add_error(None, str(exc))
        return None
    return prompt_set


def _import_message(result: services.ImportResult) -> str:
    return (
        f"Imported {result.created} prompt{'s' if result.created != 1 else ''}; "
        f"skipped {result.skipped_duplicates} duplicate{'s' if result.skipped_duplicates != 1 else ''}."
    )


@role_required(RESEARCHER, write=ADMIN)
@require_http_methods(["GET", "POST"])
def promptset_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    prompt_set = get_object_or_404(selectors.prompt_set_list(user=request.user), pk=pk)
    form = PromptImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = services.prompt_set_import(
                    prompt_set=prompt_set,
                    data=upload.read(),
                    format=_format(form.cleaned_data["format"], upload.name),
                )
            except importers.ImportFileError as exc:
                form.add_error("file", f"Nothing was imported. {exc}")
            else:
                messages.success(request, _import_message(result))
                return redirect(prompt_set)
    page = Paginator(selectors.prompt_set_prompts(prompt_set=prompt_set), 50).get_page(
        request.GET.get("page")
    )
    context = {"prompt_set": prompt_set, "page": page, "form": form}
    return render(request, "generation/promptset_detail.html", context)


# --- jobs -------------------------------------------------------------------------------------


@role_required(RESEARCHER, write=ADMIN)
@require_http_methods(["GET", "POST"])
def job_list(request: AuthenticatedRequest) -> HttpResponse:
    initial = {}
    if "prompt_set" in request.GET:
        initial["prompt_set"] = request.GET["prompt_set"]
    if "model" in request.GET:
        initial["model"] = request.GET["model"]
    form = GenerationJobForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if form.is_valid():
            try:
                job = services.generation_job_create(user=request.user, **form.cleaned_data)
            except services.GenerationError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Queued {job}.")
                return redirect(job)
    jobs = selectors.generation_job_list(user=request.user)
    status = request.GET.get("status")
    if status in GenerationJob.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "form": form,
        "statuses": GenerationJob.Status.values,
        "status": status,
    }
    return render(request, "generation/job_list.html", context)


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def job_import(request: AuthenticatedRequest) -> HttpResponse:
    form = CompletionImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = services.generation_job_import(
                data=upload.read(),
                format=_format(form.cleaned_data["format"], upload.name),
                name=form.cleaned_data["name"],
                source_name=upload.name,
                prompt_set=form.cleaned_data["prompt_set"],
                user=request.user,
            )
        except (importers.ImportFileError, services.GenerationError) as exc:
            form.add_error("file", f"Nothing was imported. {exc}")
        else:
            messages.success(
                request, f"Imported {job.prompts_total} prompts with their completions."
            )
            return redirect(job)
    return render(request, "generation/job_import.html", {"form": form})


def _job_for(request: HttpRequest, pk: int) -> GenerationJob:
    return get_object_or_404(selectors.generation_job_list(user=request.user), pk=pk)


@role_required(RESEARCHER)
@require_GET
def job_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    job = _job_for(request, pk)
    if request.htmx:  # type: ignore[attr-defined]
        if request.GET.get("poll") and not job.is_active:
            # The job the page was watching has ended: reload it whole, so the completions
            # below the progress card show without the annotator reloading by hand.
            return HttpResponseClientRefresh()
        return render(request, "generation/_job_progress.html", {"job": job})
    completions = selectors.generation_job_completions(job=job)
    if user_is_admin(request.user):
        # Reward models' scores (the training app's CompletionReward, through the reverse
        # relation, so generation needs no import of training): admins only.
        completions = completions.prefetch_related("rewards__reward_run")
    page = Paginator(completions, 40).get_page(request.GET.get("page"))
    return render(request, "generation/job_detail.html", {"job": job, "page": page})


def _job(job: GenerationJob) -> dict[str, Any]:
    return {"job": job}


# The cancel and resume buttons of a job's page.
job_action = role_required(ADMIN)(
    job_action_view(services.job_lifecycle, _job_for, "generation/_job_progress.html", _job)
)
