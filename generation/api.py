"""REST API for models, prompt sets, imports and generation jobs (token or session auth).

Researchers and admins read; only admins write. Annotators get 404s: they label blind.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from config.bounds import SEED_MAX
from config.fields import IdField
from config.jobs.api import JobActionAPIMixin
from config.pagination import paginated_response
from config.parsers import StrictJSONParser
from config.roles import ResearcherAPIView
from generation import importers, selectors, services
from generation.models import (
    Completion,
    GenerationJob,
    GenerationShard,
    PolicyModel,
    Prompt,
    PromptSet,
)


class PolicyModelSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    serializer_related_field = IdField
    # Checked by the service (bare cluster host names are fine: http://gpu1:8000/v1).
    server_url = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text=PolicyModel._meta.get_field("server_url").help_text,
    )
    extra_server_urls = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        default=list,
        max_length=services.MAX_SERVERS - 1,
        help_text=PolicyModel._meta.get_field("extra_server_urls").help_text,
    )
    tensor_parallel_size = serializers.IntegerField(
        min_value=1,
        max_value=services.MAX_GPUS,
        default=1,
        help_text=PolicyModel._meta.get_field("tensor_parallel_size").help_text,
    )

    class Meta:
        model = PolicyModel
        extra_kwargs = {"backend": {"default": PolicyModel.Backend.TRANSFORMERS}}
        fields = [
            "id",
            "name",
            "backend",
            "source",
            "server_url",
            "extra_server_urls",
            "server_model",
            "use_chat_template",
            "tensor_parallel_size",
            "parent",
            "description",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]


class PromptSetSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    prompt_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = PromptSet
        fields = ["id", "name", "description", "prompt_count", "created_at"]
        read_only_fields = ["id", "created_at"]


class PromptSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Prompt
        fields = ["id", "position", "text", "messages"]


class GenerationShardSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = GenerationShard
        fields = [
            "index",
            "position_from",
            "position_to",
            "status",
            "worker",
            "prompts_total",
            "prompts_done",
            "tokens_generated",
            "tokens_per_second",
            "attempts",
            "error",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class GenerationJobSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    progress_percent = serializers.IntegerField(read_only=True)
    shards = GenerationShardSerializer(many=True, read_only=True)

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "name",
            "prompt_set",
            "model",
            "source",
            "import_source",
            "k",
            "temperature",
            "top_p",
            "max_new_tokens",
            "seed",
            "stop",
            "batch_size",
            "batches_per_shard",
            "shards",
            "status",
            "cancel_requested",
            "prompts_total",
            "prompts_done",
            "progress_percent",
            "tokens_generated",
            "tokens_per_second",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class GenerationJobCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    prompt_set = IdField(queryset=PromptSet.objects.all())
    model = IdField(queryset=PolicyModel.objects.all())
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    k = serializers.IntegerField(min_value=1, max_value=services.MAX_K, default=4)
    temperature = serializers.FloatField(min_value=0, max_value=100, default=1.0)
    top_p = serializers.FloatField(min_value=0.0, max_value=1.0, default=1.0)
    max_new_tokens = serializers.IntegerField(min_value=1, max_value=8192, default=64)
    seed = serializers.IntegerField(min_value=0, max_value=SEED_MAX, default=0)
    # Stop strings as given: "\n\nHuman:" must not become "Human:".
    stop = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, max_length=200),
        required=False,
        default=list,
        max_length=16,
    )
    batch_size = serializers.IntegerField(min_value=1, max_value=1024, default=8)
    batches_per_shard = serializers.IntegerField(
        min_value=1,
        max_value=services.MAX_BATCHES_PER_SHARD,
        default=32,
        help_text=GenerationJob._meta.get_field("batches_per_shard").help_text,
    )


class CompletionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    prompt_text = serializers.CharField(source="prompt.text", read_only=True)

    class Meta:
        model = Completion
        fields = [
            "id",
            "prompt",
            "prompt_text",
            "sample_index",
            "text",
            "model",
            "model_name",
            "prompt_tokens",
            "completion_tokens",
            "finish_reason",
            "seed",
            "params",
        ]


class FileImportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A multipart ``file`` upload, or the file's text in ``content`` (JSON body)."""

    file = serializers.FileField(required=False)
    content = serializers.CharField(required=False, trim_whitespace=False)
    format = serializers.ChoiceField(choices=["auto", "jsonl", "csv", "hh"], default="auto")
    filename = serializers.CharField(required=False, default="", max_length=300)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == ("content" in attrs):
            raise serializers.ValidationError("send either a file or content, not both or neither")
        if attrs["format"] == "auto":
            name = attrs["file"].name if "file" in attrs else attrs["filename"]
            if not name:
                raise serializers.ValidationError("format is required when there is no file name")
            try:
                attrs["format"] = importers.detect_format(name)
            except importers.ImportFileError as exc:
                raise serializers.ValidationError({"format": [exc.message]}) from None
        return attrs

    def payload(self) -> tuple[bytes | str, str, str]:
        data = self.validated_data
        if "file" in data:
            return data["file"].read(), data["format"], data["file"].name
        return data["content"], data["format"], data.get("filename", "")


class JobImportSerializer(FileImportSerializer):
    """Completions to import as a finished job, optionally into an existing prompt set."""

    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    prompt_set = IdField(
        queryset=PromptSet.objects.all(), required=False, allow_null=True, default=None
    )


def _import_error(exc: Exception) -> Response:
    line = getattr(exc, "line", None)
    return Response(
        {"detail": f"Nothing was imported. {exc}", "line": line}, status=status.HTTP_400_BAD_REQUEST
    )


class PolicyModelListAPI(ResearcherAPIView):
    def get(self, request: Request) -> Response:
        models = selectors.policy_model_list(user=request.user)
        return paginated_response(self, request, models, PolicyModelSerializer)

    def post(self, request: Request) -> Response:
        serializer = PolicyModelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            model = services.policy_model_create(user=request.user, **serializer.validated_data)
        except services.GenerationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(PolicyModelSerializer(model).data, status=status.HTTP_201_CREATED)


class PolicyModelDetailAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        model = get_object_or_404(selectors.policy_model_list(user=request.user), pk=pk)
        return Response(PolicyModelSerializer(model).data)


class PromptSetListAPI(ResearcherAPIView):
    def get(self, request: Request) -> Response:
        sets = selectors.prompt_set_list(user=request.user)
        return paginated_response(self, request, sets, PromptSetSerializer)

    def post(self, request: Request) -> Response:
        serializer = PromptSetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            prompt_set = services.prompt_set_create(user=request.user, **serializer.validated_data)
        except services.GenerationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        prompt_set.prompt_count = 0  # type: ignore[attr-defined]
        return Response(PromptSetSerializer(prompt_set).data, status=status.HTTP_201_CREATED)


class PromptSetDetailAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        prompt_set = get_object_or_404(selectors.prompt_set_list(user=request.user), pk=pk)
        return Response(PromptSetSerializer(prompt_set).data)


class PromptSetPromptsAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        prompt_set = get_object_or_404(selectors.prompt_set_list(user=request.user), pk=pk)
        prompts = selectors.prompt_set_prompts(prompt_set=prompt_set)
        return paginated_response(self, request, prompts, PromptSerializer)


class PromptSetImportAPI(ResearcherAPIView):
    parser_classes = [MultiPartParser, FormParser, StrictJSONParser]

    def post(self, request: Request, pk: int) -> Response:
        prompt_set = get_object_or_404(selectors.prompt_set_list(user=request.user), pk=pk)
        serializer = FileImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data, fmt, _ = serializer.payload()
        try:
            result = services.prompt_set_import(prompt_set=prompt_set, data=data, format=fmt)
        except importers.ImportFileError as exc:
            return _import_error(exc)
        return Response(
            {"created": result.created, "skipped_duplicates": result.skipped_duplicates},
            status=status.HTTP_201_CREATED,
        )


class GenerationJobListAPI(ResearcherAPIView):
    def get(self, request: Request) -> Response:
        jobs = selectors.generation_job_list(user=request.user)
        if job_status := request.query_params.get("status"):
            jobs = jobs.filter(status=job_status)
        return paginated_response(self, request, jobs, GenerationJobSerializer)

    def post(self, request: Request) -> Response:
        serializer = GenerationJobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            job = services.generation_job_create(user=request.user, **serializer.validated_data)
        except services.GenerationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(GenerationJobSerializer(job).data, status=status.HTTP_201_CREATED)


class GenerationJobImportAPI(ResearcherAPIView):
    parser_classes = [MultiPartParser, FormParser, StrictJSONParser]

    def post(self, request: Request) -> Response:
        serializer = JobImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data, fmt, filename = serializer.payload()
        try:
            job = services.generation_job_import(
                data=data,
                format=fmt,
                name=serializer.validated_data["name"],
                source_name=filename,
                prompt_set=serializer.validated_data["prompt_set"],
                user=request.user,
            )
        except (importers.ImportFileError, services.GenerationError) as exc:
            return _import_error(exc)
        return Response(GenerationJobSerializer(job).data, status=status.HTTP_201_CREATED)


class GenerationJobDetailAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(selectors.generation_job_list(user=request.user), pk=pk)
        return Response(GenerationJobSerializer(job).data)


class GenerationJobActionAPI(JobActionAPIMixin, ResearcherAPIView):
    lifecycle = services.job_lifecycle
    job_serializer = GenerationJobSerializer
    job_list = staticmethod(selectors.generation_job_list)


class GenerationJobCompletionsAPI(ResearcherAPIView):
    def get(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(selectors.generation_job_list(user=request.user), pk=pk)
        completions = selectors.generation_job_completions(job=job)
        return paginated_response(self, request, completions, CompletionSerializer)
