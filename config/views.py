from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config import health
from config.roles import AuthenticatedRequest, signed_in_required, user_is_admin


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachability, for load balancers and `make run`'s smoke check.

    Everyone gets ``{"status": "ok" | "failing"}`` (200 or 503); only a signed-in admin
    sees each check's timing and error text, which can name hosts and configuration.
    """
    checks = health.health_check()
    healthy = all(check["ok"] for check in checks.values())
    body: dict[str, object] = {"status": "ok" if healthy else "failing"}
    if user_is_admin(request.user):
        body["checks"] = checks
    return JsonResponse(body, status=200 if healthy else 503)


@signed_in_required
@require_GET
def home(request: AuthenticatedRequest) -> HttpResponse:
    return render(request, "config/home.html")
