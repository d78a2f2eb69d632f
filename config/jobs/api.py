"""The cancel and resume actions of a background job's REST API, for every kind."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.jobs.lifecycle import Lifecycle
from config.roles import user_is_admin


class JobActionAPIMixin:
    """``POST .../cancel/`` and ``.../resume/`` on one row: ``as_view(action="cancel")``.

    A kind's view sets ``lifecycle`` and ``job_serializer`` and says how a user reaches a
    row (:meth:`get_job`, a 404 for a row they may not see). Admins only (403 for others);
    a state the action does not apply to is a 409 with the reason.
    """

    action: str = ""
    lifecycle: Lifecycle[Any]
    job_serializer: type[serializers.BaseSerializer]  # type: ignore[type-arg]

    def get_job(self, request: Request, pk: int) -> Any:
        raise NotImplementedError

    def job_action_error(self, exc: Exception) -> Response:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)

    def post(self, request: Request, pk: int) -> Response:
        if not user_is_admin(request.user):
            return Response(
                {"detail": "Only admins can change this."}, status=status.HTTP_403_FORBIDDEN
            )
        job = self.get_job(request, pk)
        try:
            job = self.lifecycle.act(self.action, job)
        except self.lifecycle.error as exc:
            return self.job_action_error(exc)
        return Response(self.job_serializer(job).data)
