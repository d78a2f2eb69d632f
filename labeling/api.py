"""REST API for annotators (next task, submit, undo) and for reading rankings and comparisons.

Annotators see only their own queues and rankings; admins see everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.bounds import ID_MAX, SEED_MAX, query_id
from config.pagination import paginated_response
from config.parsers import StrictJSONParser
from config.roles import (
    CanLabel,
    CanReadQueues,
    HiddenFromNonAdmins,
    IsPreflabAdmin,
    IsResearcher,
    user_is_admin,
)
from generation import importers
from labeling import record, selectors, services, snapshots
from labeling.models import (
    Comparison,
    DatasetSnapshot,
    LabelingQueue,
    LabelingTask,
    Ranking,
    Verdict,
)
from labeling.preference_import import preferences_import


class QueueSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = LabelingQueue
        fields = [
            "id",
            "name",
            "mode",
            "ask_scores",
            "overlap",
            "guidelines",
            "lease_seconds",
            "is_active",
        ]


class RankingSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A ranking; with ``context={"aliases": True}`` (annotators) its answers are named by
    their per-task aliases (A, B, ...), never by database ids."""

    annotator = serializers.CharField(source="annotator.username")
    queue = serializers.IntegerField(source="task.queue_id")

    def to_representation(self, instance: Ranking) -> dict[str, Any]:
        data = super().to_representation(instance)
        if self.context.get("aliases"):
            alias = {
                slot.completion_id: services.ALIASES[slot.slot]
                for slot in instance.task.slots.all()
            }
            data["order"] = [[alias[c] for c in group] for group in instance.order]
            data["scores"] = {alias[int(k)]: v for k, v in (instance.scores or {}).items()}
        return data

    class Meta:
        model = Ranking
        fields = [
            "id",
            "task",
            "queue",
            "annotator",
            "order",
            "scores",
            "both_bad",
            "verdict",
            "time_spent_ms",
            "comment",
            "flags",
            "created_at",
            "updated_at",
            "version",
        ]


class ComparisonSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A comparison; annotators see its answers by alias, as in RankingSerializer."""

    annotator = serializers.CharField(source="annotator.username")

    def to_representation(self, instance: Comparison) -> dict[str, Any]:
        data = super().to_representation(instance)
        if self.context.get("aliases"):
            alias = {
                slot.completion_id: services.ALIASES[slot.slot]
                for slot in instance.ranking.task.slots.all()
            }
            data["chosen"], data["rejected"] = (
                alias[instance.chosen_id],
                alias[instance.rejected_id],
            )
        return data

    class Meta:
        model = Comparison
        fields = [
            "id",
            "ranking",
            "queue",
            "prompt",
            "chosen",
            "rejected",
            "is_tie",
            "margin",
            "rank_gap",
            "score_diff",
            "imported_margin",
            "both_bad",
            "annotator",
            "created_at",
        ]


class SubmitSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The labeling page's submission, with the same limits."""

    assignment = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    # Answers are named by the aliases of the task payload ("A", "B", ...).
    order = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(max_length=2), max_length=64),
        required=False,
        max_length=64,
    )
    skip = serializers.BooleanField(default=False)
    scores = serializers.DictField(
        child=serializers.IntegerField(
            min_value=services.SCORE_RANGE[0], max_value=services.SCORE_RANGE[1]
        ),
        required=False,
        default=dict,
    )
    both_bad = serializers.BooleanField(default=False)
    # Single-answer queues: the verdict on the task's one answer, and its optional score
    # (the same as ``scores: {"A": n}``).
    verdict = serializers.ChoiceField(choices=Verdict.choices, required=False, default="")
    score = serializers.IntegerField(
        min_value=services.SCORE_RANGE[0], max_value=services.SCORE_RANGE[1], required=False
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=services.COMMENT_MAX_LENGTH
    )
    flags = serializers.ListField(
        child=serializers.ChoiceField(choices=services.FLAGS), required=False, default=list
    )
    time_spent_ms = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, default=0
    )
    demonstration = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        max_length=services.DEMONSTRATION_MAX_LENGTH,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # What a submit must hold depends on the queue's mode: the view checks it (an order,
        # or a single answer's verdict) and names the missing field.
        if "score" in attrs and attrs["scores"]:
            raise serializers.ValidationError({"score": "send score or scores, not both"})
        return attrs


def _task_payload(assignment: Any) -> dict[str, Any]:
    task = assignment.task
    return {
        "assignment": assignment.pk,
        "task": task.pk,
        "expires_at": assignment.expires_at,
        "prompt": {"text": task.prompt.text, "messages": task.prompt.messages},
        # Display order only: answers are named by per-task aliases (A, B, ...), never by
        # database ids (sequential per job, they would tell models apart), model names,
        # job ids or sample indices.
        "completions": [
            {"id": label, "label": label, "text": c.text}
            for label, c in zip(
                services.ALIASES, selectors.task_candidates(task=task), strict=False
            )
        ],
    }


def _from_aliases(task: LabelingTask, order: list[list[str]], scores: dict[str, int]) -> Any:
    """The submitted order and scores with aliases turned into completion ids."""
    ids = {alias: c for c, alias in services.task_aliases(task=task).items()}

    def one(alias: str) -> int:
        if alias not in ids:
            raise services.LabelingError(f"{alias!r} is not an answer of this task")
        return ids[alias]

    return [[one(a) for a in group] for group in order], {str(one(a)): v for a, v in scores.items()}


class LabelingAPIView(APIView):
    permission_classes = [IsAuthenticated, CanLabel]

    def queue(self, request: Request, pk: int) -> LabelingQueue:
        return selectors.queue_get(user=request.user, pk=pk)


class QueueListAPI(LabelingAPIView):
    """Annotators list the queues they may label; researchers and admins list every queue
    (read-only for researchers: the snapshot form names them)."""

    permission_classes = [IsAuthenticated, CanReadQueues]

    def get(self, request: Request) -> Response:
        queues = selectors.queue_list_readable(user=request.user)
        return paginated_response(self, request, queues, QueueSerializer)


class NextTaskAPI(LabelingAPIView):
    def post(self, request: Request, pk: int) -> Response:
        queue = self.queue(request, pk)
        assignment = services.task_claim_next(queue=queue, user=request.user)
        if assignment is None:
            return Response(
                {"detail": "no task left for you in this queue"}, status=status.HTTP_204_NO_CONTENT
            )
        return Response(_task_payload(assignment))


class SubmitAPI(LabelingAPIView):
    def post(self, request: Request, pk: int) -> Response:
        queue = self.queue(request, pk)
        serializer = SubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        assignment = selectors.assignment_get(user=request.user, pk=data["assignment"])
        if assignment.task.queue_id != queue.pk:
            raise Http404
        try:
            if data["skip"]:
                services.task_skip(assignment=assignment)
                return Response({"skipped": True})
            given_order = data.get("order")
            given_scores = data["scores"]
            if queue.mode == LabelingQueue.Mode.SINGLE:
                # The task's one answer is its alias "A"; the service asks for the verdict.
                given_order = given_order or [[services.ALIASES[0]]]
                if "score" in data:
                    given_scores = {services.ALIASES[0]: data["score"]}
            elif "score" in data:
                raise services.LabelingError(
                    "score: only single-answer queues take one score; send scores by answer",
                    field="score",
                )
            elif not given_order:
                raise services.LabelingError(
                    f"order: this is a {queue.mode} queue; send an order (best first, tie "
                    "groups of answer letters) or skip",
                    field="order",
                )
            order, scores = _from_aliases(assignment.task, given_order, given_scores)
            ranking = services.ranking_submit(
                assignment_id=assignment.pk,
                user=request.user,
                submission=services.Submission(
                    order=order,
                    scores=scores,
                    both_bad=data["both_bad"],
                    comment=data["comment"],
                    flags=tuple(data["flags"]),
                    time_spent_ms=data["time_spent_ms"],
                    demonstration=data["demonstration"],
                    verdict=data["verdict"],
                ),
            )
        except services.LeaseExpired as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except services.LabelingError as exc:
            body = {"detail": str(exc)}
            if exc.field:
                body["field"] = exc.field
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        body = RankingSerializer(ranking, context={"aliases": True}).data
        body["comparisons"] = ranking.comparisons.count()
        return Response(body, status=status.HTTP_201_CREATED)


class UndoAPI(LabelingAPIView):
    def post(self, request: Request, pk: int) -> Response:
        queue = self.queue(request, pk)
        assignment = services.ranking_undo_last(queue=queue, user=request.user)
        if assignment is None:
            return Response({"detail": "nothing to undo"}, status=status.HTTP_409_CONFLICT)
        return Response(_task_payload(assignment))


class GoldAPI(APIView):
    """Admins mark a task as gold with its known order; annotators' accuracy on it is tracked."""

    permission_classes = [IsAuthenticated, HiddenFromNonAdmins]

    def post(self, request: Request, pk: int) -> Response:
        task = LabelingTask.objects.filter(pk=pk).first()
        if task is None:
            raise Http404
        if not isinstance(request.data, Mapping):
            return Response(
                {"detail": 'send a JSON object: {"order": [[completion ids], ...]}'},
                status=status.HTTP_400_BAD_REQUEST,
            )
        order = request.data.get("order")
        try:
            task = services.labeling_task_set_gold(task=task, order=order)
        except services.LabelingError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"task": task.pk, "is_gold": task.is_gold, "gold_order": task.gold_order})


class _Paginated(LabelingAPIView):
    def paginate(self, request: Request, queryset: Any, serializer: Any) -> Response:
        context = {"aliases": not user_is_admin(request.user)}
        return paginated_response(self, request, queryset, serializer, context=context)

    def queue_filter(self, request: Request) -> LabelingQueue | None:
        pk = query_id(request.query_params, "queue")
        return self.queue(request, pk) if pk is not None else None


class RankingListAPI(_Paginated):
    def get(self, request: Request) -> Response:
        rankings = selectors.ranking_list(user=request.user, queue=self.queue_filter(request))
        return self.paginate(request, rankings, RankingSerializer)


class ComparisonListAPI(_Paginated):
    def get(self, request: Request) -> Response:
        comparisons = selectors.comparison_list(user=request.user, queue=self.queue_filter(request))
        return self.paginate(request, comparisons, ComparisonSerializer)


class SnapshotSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DatasetSnapshot
        fields = [
            "id",
            "name",
            "description",
            "filters",
            "aggregation",
            "ties",
            "eval_fraction",
            "seed",
            "content_hash",
            "row_count",
            "train_count",
            "eval_count",
            "prompt_count",
            "stats",
            "hash_scheme",
            "created_at",
        ]


class SnapshotCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=10_000
    )
    queues = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        allow_empty=False,
        max_length=1000,
    )
    date_from = serializers.DateTimeField(required=False, allow_null=True, default=None)
    date_to = serializers.DateTimeField(required=False, allow_null=True, default=None)
    annotators = serializers.ListField(
        child=serializers.CharField(max_length=150), required=False, default=list
    )
    exclude_flags = serializers.ListField(
        child=serializers.ChoiceField(choices=services.FLAGS), required=False, default=list
    )
    min_agreement = serializers.FloatField(min_value=0, max_value=1, default=0.0)
    include_ai = serializers.BooleanField(default=False)
    both_bad = serializers.ChoiceField(choices=snapshots.BOTH_BAD_CHOICES, default="keep")
    aggregation = serializers.ChoiceField(choices=DatasetSnapshot.Aggregation.values, default="all")
    ties = serializers.ChoiceField(choices=DatasetSnapshot.Ties.values, default="drop")
    eval_fraction = serializers.FloatField(min_value=0, max_value=0.9, default=0.1)
    seed = serializers.IntegerField(min_value=0, max_value=SEED_MAX, default=0)


class SnapshotListAPI(APIView):
    """Researchers and admins list and build snapshots."""

    permission_classes = [IsAuthenticated, IsResearcher]

    def get(self, request: Request) -> Response:
        return paginated_response(self, request, DatasetSnapshot.objects.all(), SnapshotSerializer)

    def post(self, request: Request) -> Response:
        serializer = SnapshotCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            snapshot = snapshots.snapshot_build_from_data(
                data=data, queue_ids=data["queues"], user=request.user
            )
        except snapshots.SnapshotError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


class SnapshotDetailAPI(APIView):
    permission_classes = [IsAuthenticated, IsResearcher]

    def get(self, request: Request, pk: int) -> Response:
        snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
        return Response(SnapshotSerializer(snapshot).data)


def split_param(request: Request) -> str | None | Response:
    """``?split=train|eval`` of an export (None: both), or the 400 that names the field."""
    try:
        return snapshots.snapshot_split(request.query_params.get("split"))
    except snapshots.SnapshotError as exc:
        return Response({"detail": str(exc), "field": "split"}, status=status.HTTP_400_BAD_REQUEST)


class SnapshotUnpairedExportAPI(APIView):
    """The single-answer labels in TRL's unpaired format (KTO), streamed; ``?split=train|eval``."""

    permission_classes = [IsAuthenticated, IsResearcher]

    def get(self, request: Request, pk: int) -> StreamingHttpResponse | Response:
        snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
        split = split_param(request)
        if isinstance(split, Response):
            return split
        return StreamingHttpResponse(
            snapshots.snapshot_export_unpaired_jsonl(snapshot, split=split),
            content_type="application/jsonl; charset=utf-8",
        )


class SnapshotExportAPI(APIView):
    """The TRL preference JSONL, streamed; ``?split=train|eval``."""

    permission_classes = [IsAuthenticated, IsResearcher]

    def get(self, request: Request, pk: int) -> StreamingHttpResponse | Response:
        snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
        split = split_param(request)
        if isinstance(split, Response):
            return split
        return StreamingHttpResponse(
            snapshots.snapshot_export_trl_jsonl(snapshot, split=split),
            content_type="application/jsonl; charset=utf-8",
        )


class SnapshotParquetAPI(APIView):
    """The same records as Parquet (written to a temporary file in row groups, then sent)."""

    permission_classes = [IsAuthenticated, IsResearcher]

    def get(self, request: Request, pk: int) -> FileResponse | Response:
        snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
        split = split_param(request)
        if isinstance(split, Response):
            return split
        return FileResponse(
            snapshots.snapshot_parquet_file(snapshot, split=split),
            as_attachment=True,
            filename=f"snapshot-{snapshot.pk}.parquet",
        )


def queue_ids_param(raw: list[str]) -> list[int] | None:
    """``?queue=<id>`` (repeatable) as ids; None when absent. A non-number is a 400."""
    if not raw:
        return None
    if not all(q.isascii() and q.isdigit() and 0 < int(q) <= ID_MAX for q in raw):
        raise serializers.ValidationError({"queue": "queue ids are numbers"})
    return [int(q) for q in raw]


class LabelVersionsExportAPI(APIView):
    """Every version of every annotator's label (raw, with times), as JSON lines;
    ``?queue=<id>`` (repeatable) narrows it to queues."""

    permission_classes = [IsAuthenticated, IsResearcher]

    def get(self, request: Request) -> StreamingHttpResponse:
        queue_ids = queue_ids_param(request.query_params.getlist("queue"))
        return StreamingHttpResponse(
            record.label_versions_export_jsonl(queue_ids=queue_ids),
            content_type="application/jsonl; charset=utf-8",
        )


class SnapshotCardAPI(APIView):
    """The snapshot's data card (README.md): counts, agreement, filters, hash and date."""

    permission_classes = [IsAuthenticated, IsResearcher]

    def get(self, request: Request, pk: int) -> HttpResponse:
        snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
        return HttpResponse(
            snapshots.snapshot_data_card(snapshot), content_type="text/markdown; charset=utf-8"
        )


class PreferenceImportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A multipart ``file`` upload, or the file's text in ``content``."""

    file = serializers.FileField(required=False)
    content = serializers.CharField(required=False, trim_whitespace=False)
    format = serializers.ChoiceField(choices=["hh", "trl"])
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == ("content" in attrs):
            raise serializers.ValidationError("send either a file or content, not both or neither")
        return attrs


class PreferenceImportAPI(APIView):
    """Admins import labeled pairs (HH-RLHF or TRL JSONL) as comparisons. Researchers read
    the comparison store through snapshots but do not change it."""

    permission_classes = [IsAuthenticated, IsPreflabAdmin]
    parser_classes = [MultiPartParser, FormParser, StrictJSONParser]

    def post(self, request: Request) -> Response:
        serializer = PreferenceImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data.get("file")
        name = serializer.validated_data["name"]
        data = upload.read() if upload is not None else serializer.validated_data["content"]
        source = getattr(upload, "name", "") or name
        fmt = serializer.validated_data["format"]
        try:
            queue = preferences_import(
                data=data,
                format=fmt,
                name=name,
                source_name=source,
                user=request.user,
            )
        except importers.ImportFileError as exc:
            return Response(
                {"detail": f"Nothing was imported. {exc}", "line": exc.line},
                status=status.HTTP_400_BAD_REQUEST,
            )
        except services.LabelingError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            {"queue": queue.pk, "name": queue.name, "comparisons": queue.comparisons.count()},
            status=status.HTTP_201_CREATED,
        )
