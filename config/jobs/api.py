"""The cancel and resume actions of a background job's REST API, for every kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.jobs.lifecycle import Lifecycle


class JobActionAPIMixin:
    """``POST .../cancel/`` and ``.../resume/`` on one row: ``as_view(action="cancel")``.

    A kind's view sets ``lifecycle``, ``job_serializer`` and ``job_list``, the selector of
    the rows a user may see (``job_list(user=...)``: a 404 for others). Who may act is
    declared by the view's permission classes (``config.roles.ResearcherAPIView``: admins
    only, 403 for researchers); a state the action does not apply to is a 409 with the reason.
    """

    action: str = ""
    lifecycle: Lifecycle[Any]
    job_serializer: type[serializers.BaseSerializer]  # type: ignore[type-arg]
    job_list: Callable[..., QuerySet[Any]]

    def get_job(self, request: Request, pk: int) -> Any:
        return get_object_or_404(type(self).job_list(user=request.user), pk=pk)

    def job_action_error(self, exc: Exception) -> Response:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)

    def post(self, request: Request, pk: int) -> Response:
        job = self.get_job(request, pk)
        try:
            job = self.lifecycle.act(self.action, job)
        except self.lifecycle.error as exc:
            return self.job_action_error(exc)
        return Response(self.job_serializer(job).data)
