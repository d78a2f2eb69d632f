"""Search labels and prompts; one prompt's whole record (researchers and admins)."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from config.roles import RESEARCHER, AuthenticatedRequest, role_required
from generation.models import Prompt
from labeling import search
from labeling.search_forms import SearchForm

PAGE_SIZE = 50


@role_required(RESEARCHER)
@require_GET
def search_page(request: AuthenticatedRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    context: dict[str, object] = {"form": form, "kind": "labels"}
    if form.is_bound and form.is_valid():
        kind = form.cleaned_data.get("kind") or "labels"
        number = request.GET.get("page")
        page: Page[Any]
        if kind == "prompts":
            prompts = search.prompt_search(text=form.cleaned_data.get("q") or "")
            page = Paginator(prompts, PAGE_SIZE).get_page(number)
        else:
            labels = search.label_search(spec=form.label_filter())
            label_page = Paginator(labels, PAGE_SIZE).get_page(number)
            context["rows"] = [search.label_view(label) for label in label_page.object_list]
            page = label_page
        params = request.GET.copy()
        params.pop("page", None)
        context.update(kind=kind, page=page, page_query=params.urlencode())
    template = "labeling/_search_results.html" if request.htmx else "labeling/search.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@role_required(RESEARCHER)
@require_GET
def prompt_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    prompt = get_object_or_404(Prompt.objects.select_related("prompt_set"), pk=pk)
    record = search.prompt_record(prompt=prompt)
    tasks = [
        {
            "record": task,
            "labels": [search.label_view(label, task.letters) for label in task.labels],
            "answers": sorted((letter, pk) for pk, letter in task.letters.items()),
        }
        for task in record.tasks
    ]
    return render(
        request,
        "labeling/prompt_detail.html",
        {"record": record, "prompt": prompt, "tasks": tasks},
    )
