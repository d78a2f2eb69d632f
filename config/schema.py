"""The OpenAPI schema's conventions (drf-spectacular): who may call each endpoint, and the
errors every endpoint can answer, added to each operation from the view's permissions.

A view says who may call it with ``schema_access`` (a sentence, or a dict by HTTP method);
without one, the sentence comes from its permission classes.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated

from config.roles import RolePermission

_WHO = {AllowAny: "anyone", IsAuthenticated: "any signed-in user"}


def _who(permission: object) -> str:
    if isinstance(permission, RolePermission):
        return permission.who
    kind = type(permission)
    return _WHO.get(kind, (kind.__doc__ or kind.__name__).strip().rstrip("."))


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``{"detail": "..."}``, or ``{"<field>": ["message", ...]}`` naming each bad field."""

    detail = serializers.CharField(required=False, help_text="What went wrong.")


_ERRORS = {
    "400": "Invalid input: the body names each bad field (`{field: [messages]}`) or says why in `detail`.",
    "401": "Not signed in: send `Authorization: Token <key>` or a session cookie.",
    "403": "Signed in, but your role may not do this.",
    "404": "No such object, or your role may not see it (annotators get 404 for generation and training objects).",
    "429": "Too many requests: wait and try again.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        if operation is not None:
            base = operation.get("description", "")
            operation["description"] = f"{base}\n\n**Who may call it:** {self._access()}.".strip()
        return operation

    def _access(self) -> str:
        declared = getattr(self.view, "schema_access", None)
        if isinstance(declared, dict):
            declared = declared.get(self.method, declared.get("*"))
        if declared:
            return str(declared)
        permissions = self.view.get_permissions()
        names = [
            _who(p)
            for p in permissions
            if not (isinstance(p, IsAuthenticated) and len(permissions) > 1)
        ]
        return " and ".join(names) or "anyone"

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:  # type: ignore[override]
        responses: dict[str, Any] = super()._get_response_bodies(direction)  # type: ignore[arg-type]
        permissions = self.view.get_permissions()
        public = any(isinstance(p, AllowAny) for p in permissions)
        codes = []
        if self.method in ("POST", "PUT", "PATCH") or self._has_query_parameters():
            codes.append("400")
        if not public:
            codes += ["401", "403"]
        if "{" in self.path or not public:
            codes.append("404")
        if self.view.get_throttles():
            codes.append("429")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=_ERRORS[code]), code
                )
        return responses

    def _has_query_parameters(self) -> bool:
        return any(p.get("in") == "query" for p in self._get_parameters())
