"""``GET /api/``: where everything is, for people and scripts."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

_LINKS = {
    "schema": "api-schema",
    "docs": "api-docs",
    "token": "api-token",
    "models": "api-model-list",
    "prompt_sets": "api-promptset-list",
    "jobs": "api-job-list",
    "queues": "api-queue-list",
    "rankings": "api-ranking-list",
    "comparisons": "api-comparison-list",
    "snapshots": "api-snapshot-list",
    "runs": "api-run-list",
    "scorings": "api-scoring-list",
    "evaluations": "api-evaluation-list",
}


class APIRootView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer("APIRoot", {name: serializers.URLField() for name in _LINKS}),
        auth=[],
        summary="Links to every API section",
    )
    def get(self, request: Request) -> Response:
        return Response({name: reverse(url, request=request) for name, url in _LINKS.items()})
