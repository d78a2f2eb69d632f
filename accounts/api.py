"""``POST /api/token/``: a username and password for the user's API token (throttled, and
locked out by django-axes after repeated failures); ``DELETE /api/token/`` revokes it."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from accounts import services
from accounts.tokens import token_expires_at
from config.parsers import StrictJSONParser

TokenResponse = inline_serializer(
    "TokenResponse",
    {"token": serializers.CharField(), "expires": serializers.DateTimeField(allow_null=True)},
)


class TokenAPI(APIView):
    parser_classes = [StrictJSONParser, FormParser, MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    def get_permissions(self) -> list[object]:
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    def get_throttles(self) -> list[object]:
        return super().get_throttles() if self.request.method == "POST" else []

    @extend_schema(
        request=AuthTokenSerializer,
        responses={
            200: TokenResponse,
            400: OpenApiResponse(description="Wrong username or password."),
            403: OpenApiResponse(description="Locked out after too many failed attempts."),
            429: OpenApiResponse(description="Too many requests from this address."),
        },
        auth=[],
        summary="Get your API token",
        description=(
            "The user's current token, or a new one when there is none or it expired "
            "(tokens expire after PREFLAB_TOKEN_TTL_DAYS days)."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        issued = services.token_issue(user=serializer.validated_data["user"])
        token = Token.objects.get(key=issued.key)
        return Response({"token": issued.key, "expires": token_expires_at(token)})

    @extend_schema(
        request=None,
        responses={204: OpenApiResponse(description="The token is revoked.")},
        summary="Revoke your API token",
    )
    def delete(self, request: Request) -> Response:
        services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
