"""Middleware of the project's own: flash messages for htmx answers, and the last line of
defence against bad input."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib import messages
from django.db import DataError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


class HtmxMessagesMiddleware:
    """Deliver flash messages raised during an htmx request in that request's answer.

    An htmx action ("Cancel", "Resume") answers with a fragment, which has no place for
    messages; left queued, they surfaced on whatever full page came next. Here they ride
    along as an out-of-band swap of ``#messages``. Answers that make the browser load another
    page (redirects, ``HX-Refresh``, ``HX-Redirect``) leave them queued for that page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not getattr(request, "htmx", False)
            or response.streaming
            or 300 <= response.status_code < 400
            or "HX-Refresh" in response.headers
            or "HX-Redirect" in response.headers
            or "HX-Location" in response.headers
            or not response.get("Content-Type", "").startswith("text/html")
        ):
            return response
        storage = messages.get_messages(request)
        if not storage:
            return response
        response.content += render_to_string(
            "_messages.html", {"messages": storage, "oob": True}, request=request
        ).encode(response.charset)
        return response


def _is_bad_input(exc: Exception) -> bool:
    if isinstance(exc, DataError):
        return True
    # SQLite's driver refuses Python ints beyond 64 bits before the query runs.
    if isinstance(exc, OverflowError) and "SQLite INTEGER" in str(exc):
        return True
    # Text with a lone surrogate cannot be encoded for the database.
    return isinstance(exc, UnicodeEncodeError) and "surrogate" in str(exc)


class BadInputMiddleware:
    """A database error that a client's value caused (an integer beyond 64 bits, a NUL
    character on PostgreSQL, a lone surrogate) becomes a 400, not a 500.

    Forms and serializers bound every field they know (``config.bounds``) and name it in their
    errors; this catches what they missed, logs it so it gets fixed, and says only that the
    input was invalid.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not _is_bad_input(exc):
            return None
        logger.warning(
            "bad input reached the database on %s %s: %s", request.method, request.path, exc
        )
        message = "A value in the request is out of range or contains invalid characters."
        if request.path.startswith("/api/") or request.headers.get("Accept", "").startswith(
            "application/json"
        ):
            return JsonResponse({"detail": message}, status=400)
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
