"""Researchers build snapshots in the browser and download their exports."""

from __future__ import annotations

from django.contrib import messages
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from config.roles import RESEARCHER, AuthenticatedRequest, role_required
from labeling import record, snapshots
from labeling.models import DatasetSnapshot, SnapshotRow
from labeling.snapshot_forms import SnapshotForm


@role_required(RESEARCHER)
@require_http_methods(["GET", "POST"])
def snapshot_list(request: AuthenticatedRequest) -> HttpResponse:
    form = SnapshotForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            snapshot = snapshots.snapshot_build_from_data(
                data=data, queue_ids=[q.pk for q in data["queues"]], user=request.user
            )
        except snapshots.SnapshotError as exc:
            form.add_error(None, str(exc))
        else:
            singles = snapshot.stats.get("single_answers", 0)
            also = f" and {singles} single answers" if singles else ""
            messages.success(
                request, f"Froze {snapshot.row_count} rows{also} into {snapshot.name}."
            )
            return redirect("labeling:snapshot-detail", pk=snapshot.pk)
    context = {"snapshots": DatasetSnapshot.objects.all(), "form": form}
    return render(request, "labeling/snapshot_list.html", context)


@role_required(RESEARCHER)
@require_GET
def snapshot_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
    sample = SnapshotRow.objects.filter(snapshot=snapshot).select_related(
        "prompt", "chosen", "rejected"
    )[:10]
    return render(
        request, "labeling/snapshot_detail.html", {"snapshot": snapshot, "sample": sample}
    )


def _split_param(request: HttpRequest) -> str | None | HttpResponse:
    """``?split=train|eval`` of a download (None: both), or the 400 that says why not."""
    try:
        return snapshots.snapshot_split(request.GET.get("split"))
    except snapshots.SnapshotError as exc:
        return HttpResponse(str(exc), status=400)


@role_required(RESEARCHER)
@require_GET
def snapshot_export(request: AuthenticatedRequest, pk: int) -> HttpResponseBase:
    snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
    split = _split_param(request)
    if isinstance(split, HttpResponse):
        return split
    response = StreamingHttpResponse(
        snapshots.snapshot_export_trl_jsonl(snapshot, split=split),
        content_type="application/jsonl; charset=utf-8",
    )
    suffix = f"-{split}" if split else ""
    response["Content-Disposition"] = f'attachment; filename="{_slug(snapshot.name)}{suffix}.jsonl"'
    return response


@role_required(RESEARCHER)
@require_GET
def snapshot_export_parquet(request: AuthenticatedRequest, pk: int) -> HttpResponseBase:
    snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
    split = _split_param(request)
    if isinstance(split, HttpResponse):
        return split
    suffix = f"-{split}" if split else ""
    return FileResponse(
        snapshots.snapshot_parquet_file(snapshot, split=split),
        as_attachment=True,
        filename=f"{_slug(snapshot.name)}{suffix}.parquet",
        content_type="application/vnd.apache.parquet",
    )


@role_required(RESEARCHER)
@require_GET
def snapshot_export_extra(request: AuthenticatedRequest, pk: int, kind: str) -> HttpResponseBase:
    """The listwise rankings, the demonstrations (SFT) or the single-answer labels (TRL's
    unpaired format, ``?split=train|eval``) of a snapshot, as JSONL."""
    snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
    suffix = ""
    if kind == "unpaired":
        split = _split_param(request)
        if isinstance(split, HttpResponse):
            return split
        suffix = f"-{split}" if split else ""
        content = snapshots.snapshot_export_unpaired_jsonl(snapshot, split=split)
    elif kind == "rankings":
        content = snapshots.snapshot_export_rankings_jsonl(snapshot)
    else:
        content = snapshots.snapshot_export_sft_jsonl(snapshot)
    response = StreamingHttpResponse(content, content_type="application/jsonl; charset=utf-8")
    filename = f"{_slug(snapshot.name)}-{kind}{suffix}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@role_required(RESEARCHER)
@require_GET
def label_versions_export(request: AuthenticatedRequest) -> HttpResponseBase:
    """Every version of every annotator's label, raw, with times (``?queue=<id>``)."""
    raw = request.GET.getlist("queue")
    if not all(q.isdigit() for q in raw):
        return HttpResponse("queue ids are numbers", status=400)
    response = StreamingHttpResponse(
        record.label_versions_export_jsonl(queue_ids=[int(q) for q in raw] or None),
        content_type="application/jsonl; charset=utf-8",
    )
    response["Content-Disposition"] = 'attachment; filename="label-versions.jsonl"'
    return response


@role_required(RESEARCHER)
@require_GET
def snapshot_card(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
    response = HttpResponse(
        snapshots.snapshot_data_card(snapshot), content_type="text/markdown; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_slug(snapshot.name)}-README.md"'
    return response


def _slug(name: str) -> str:
    from django.utils.text import slugify

    return slugify(name) or "snapshot"
