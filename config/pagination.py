"""The one pagination style of every API list: ``{"count", "next", "previous", "results"}``,
``?page=`` (and ``?page_size=`` up to 500)."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def paginated_response(
    view: Any, request: Any, queryset: Any, serializer: Any, *, context: Any = None
) -> Response:
    """One page of ``queryset`` serialized with ``serializer`` (given ``context``), in the
    API's list style."""
    if getattr(queryset, "ordered", True) is False:
        queryset = queryset.order_by("-pk")  # a stable order, so pages do not overlap
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True, context=context or {}).data)
