"""The OpenAPI description of generation/api.py's views (drf-spectacular), kept beside
them rather than on every method: request and response bodies, query parameters, who may
call each one, and the list views' pagination."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)

from config.pagination import Pagination
from generation import api

READ_WRITE = {
    "GET": "researchers and admins (annotators get 404)",
    "POST": "admins (researchers get 403, annotators 404)",
}
ADMIN_WRITE = "admins (researchers get 403, annotators 404)"
READ = "researchers and admins (annotators get 404)"
IMPORTED = OpenApiResponse(
    description="Nothing was imported: `detail` says why and `line` names the bad line."
)

for view in (
    api.PolicyModelListAPI,
    api.PromptSetListAPI,
    api.PromptSetPromptsAPI,
    api.GenerationJobListAPI,
    api.GenerationJobCompletionsAPI,
):
    view.pagination_class = Pagination  # type: ignore[attr-defined]

api.PolicyModelListAPI.schema_access = READ_WRITE  # type: ignore[attr-defined]
api.PromptSetListAPI.schema_access = READ_WRITE  # type: ignore[attr-defined]
api.GenerationJobListAPI.schema_access = READ_WRITE  # type: ignore[attr-defined]
for view in (
    api.PolicyModelDetailAPI,
    api.PromptSetDetailAPI,
    api.PromptSetPromptsAPI,
    api.GenerationJobDetailAPI,
    api.GenerationJobCompletionsAPI,
):
    view.schema_access = READ  # type: ignore[attr-defined]
for view in (api.PromptSetImportAPI, api.GenerationJobImportAPI, api.GenerationJobActionAPI):
    view.schema_access = ADMIN_WRITE  # type: ignore[attr-defined]

extend_schema_view(
    get=extend_schema(summary="List models", responses=api.PolicyModelSerializer(many=True)),
    post=extend_schema(
        summary="Register a model",
        description="A local folder under PREFLAB_MODEL_ROOTS or a hub id, or an "
        "OpenAI-compatible server.",
        request=api.PolicyModelSerializer,
        responses={201: api.PolicyModelSerializer},
    ),
)(api.PolicyModelListAPI)
extend_schema_view(
    get=extend_schema(summary="A model", responses=api.PolicyModelSerializer),
)(api.PolicyModelDetailAPI)
extend_schema_view(
    get=extend_schema(summary="List prompt sets", responses=api.PromptSetSerializer(many=True)),
    post=extend_schema(
        summary="Create a prompt set",
        request=api.PromptSetSerializer,
        responses={201: api.PromptSetSerializer},
    ),
)(api.PromptSetListAPI)
extend_schema_view(
    get=extend_schema(summary="A prompt set", responses=api.PromptSetSerializer),
)(api.PromptSetDetailAPI)
extend_schema_view(
    get=extend_schema(summary="A prompt set's prompts", responses=api.PromptSerializer(many=True)),
)(api.PromptSetPromptsAPI)
extend_schema_view(
    post=extend_schema(
        summary="Import prompts into a set (atomic)",
        request={
            "multipart/form-data": api.FileImportSerializer,
            "application/json": api.FileImportSerializer,
        },
        responses={
            201: OpenApiResponse(description="`created` and `skipped_duplicates`."),
            400: IMPORTED,
        },
    ),
)(api.PromptSetImportAPI)
extend_schema_view(
    get=extend_schema(
        summary="List generation jobs",
        parameters=[OpenApiParameter("status", str, description="only jobs in this status")],
        responses=api.GenerationJobSerializer(many=True),
    ),
    post=extend_schema(
        summary="Launch a sampling job",
        request=api.GenerationJobCreateSerializer,
        responses={201: api.GenerationJobSerializer},
    ),
)(api.GenerationJobListAPI)
extend_schema_view(
    post=extend_schema(
        summary="Import completions as a finished job (atomic)",
        request={
            "multipart/form-data": api.JobImportSerializer,
            "application/json": api.JobImportSerializer,
        },
        responses={201: api.GenerationJobSerializer, 400: IMPORTED},
    ),
)(api.GenerationJobImportAPI)
extend_schema_view(
    get=extend_schema(summary="A generation job", responses=api.GenerationJobSerializer),
)(api.GenerationJobDetailAPI)
extend_schema_view(
    post=extend_schema(
        summary="Cancel or resume a job",
        request=None,
        responses={
            200: api.GenerationJobSerializer,
            409: OpenApiResponse(description="The job is not in a state that allows it."),
        },
    ),
)(api.GenerationJobActionAPI)
extend_schema_view(
    get=extend_schema(summary="A job's completions", responses=api.CompletionSerializer(many=True)),
)(api.GenerationJobCompletionsAPI)
