"""Middleware of the project's own."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


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
