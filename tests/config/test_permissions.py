"""Every URL of the project declares who may use it, and does what it declares.

The walk covers every URL pattern (the apps' pages, their APIs, the project's own routes);
the admin site is Django's and checked as staff-only on its own. A page declares its access
with ``role_required`` or ``signed_in_required``, an API view with permission classes that
name a role (``config.roles.RolePermission``). Only the URLs in ``PUBLIC`` declare none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpResponse, HttpResponseBase
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated
from rest_framework.views import APIView

from config.roles import (
    ADMIN,
    AdminWrites,
    HiddenRolePermission,
    RolePermission,
    page_access,
    user_has_role,
)
from tests.factories import UserFactory
from tests.generation.factories import GenerationJobFactory, PolicyModelFactory
from tests.labeling.factories import make_queue
from tests.training.factories import TrainingRunFactory
from training.models import Evaluation, EvaluationEntry, RewardScoring

# Reachable without signing in, on purpose (by URL name, or by route when unnamed).
PUBLIC = {
    "healthz",  # load balancers; only admins see the checks' details
    "favicon.ico",
    "login",
    "logout",
    "accounts:set-password",  # the one-time link is the credential
    "api-root",
    "api-schema",  # the schema lists endpoints, not data
    "api-docs",
    "api-token",  # POST signs in; DELETE needs a signed-in user
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    route: str
    callback: Callable[..., Any]

    def __str__(self) -> str:
        return self.name


def endpoints(
    patterns: Sequence[URLPattern | URLResolver] | None = None,
    prefix: str = "",
    namespace: str = "",
) -> Iterator[Endpoint]:
    """Every URL pattern under ``patterns`` (default: the project's), the admin site left out."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from endpoints(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        else:
            route = prefix + str(pattern.pattern)
            name = f"{namespace}{pattern.name}" if pattern.name else route
            yield Endpoint(name=name, route=route, callback=pattern.callback)


@dataclass(frozen=True)
class Access:
    """Who a view says may use it: ``roles`` to read (empty: any signed-in user),
    ``write_roles`` for requests that change something; ``hidden``: refusals are 404s."""

    roles: tuple[str, ...]
    write_roles: tuple[str, ...]
    hidden: bool
    api: bool

    def roles_for(self, method: str) -> tuple[str, ...]:
        return self.roles if method in SAFE_METHODS else self.write_roles


def _api_view_class(callback: Callable[..., Any]) -> type[APIView] | None:
    view_class = getattr(callback, "cls", None)
    return view_class if isinstance(view_class, type) and issubclass(view_class, APIView) else None


def declared_access(callback: Callable[..., Any]) -> Access | None:
    """The access a view declares, or None when it declares none (DRF's default
    ``IsAuthenticated`` is not a declaration: it names no role)."""
    view_class = _api_view_class(callback)
    if view_class is None:
        page = page_access(callback)
        if page is None:
            return None
        return Access(page.roles, page.write_roles or page.roles, hidden=False, api=False)
    declared = [
        klass
        for klass in view_class.__mro__
        if issubclass(klass, APIView)
        and klass is not APIView
        and "permission_classes" in vars(klass)
    ]
    if not declared:
        return None
    permissions = list(view_class.permission_classes)
    roles = [p for p in permissions if isinstance(p, type) and issubclass(p, RolePermission)]
    if len(roles) != 1 or AllowAny in permissions or IsAuthenticated not in permissions:
        return None
    role = roles[0]
    write_roles = (ADMIN,) if AdminWrites in permissions else role.roles
    return Access(role.roles, write_roles, hidden=issubclass(role, HiddenRolePermission), api=True)


def undeclared(candidates: Sequence[Endpoint]) -> list[str]:
    return [
        e.name for e in candidates if e.name not in PUBLIC and declared_access(e.callback) is None
    ]


GUARDED = [e for e in endpoints() if e.name not in PUBLIC]


def test_it_finds_every_app_s_urls() -> None:
    names = {e.name for e in endpoints()}
    assert {"home", "accounts:user-list", "generation:job-detail", "api-job-cancel"} <= names
    assert {
        "labeling:queue-label",
        "api-queue-submit",
        "training:run-list",
        "api-run-list",
    } <= names
    assert len(GUARDED) > 60


def test_it_has_every_view_declare_who_may_use_it() -> None:
    assert undeclared(GUARDED) == []


def test_it_keeps_the_public_list_to_urls_that_exist() -> None:
    assert PUBLIC <= {e.name for e in endpoints()}


def test_it_flags_a_view_that_declares_nothing() -> None:
    class Forgotten(APIView):  # DRF's default IsAuthenticated: signed in, any role
        def get(self, request: Any) -> HttpResponse:
            return HttpResponse()

    class Open(APIView):
        permission_classes = [AllowAny]

    def plain(request: Any) -> HttpResponse:
        return HttpResponse()

    patterns = [
        path("forgotten/", Forgotten.as_view(), name="forgotten"),
        path("open/", Open.as_view(), name="open"),
        path("plain/", plain, name="plain"),
    ]
    assert undeclared(list(endpoints(patterns))) == ["forgotten", "open", "plain"]


# --- behaviour: each declaration holds for the anonymous, the wrong role and the right one ---


def _cast() -> dict[str, Any]:
    return {
        "anonymous": None,
        "eve (no role)": UserFactory(username="eve"),
        "alice (annotator)": UserFactory(username="alice", roles=["annotator"]),
        "dave (researcher)": UserFactory(username="dave", roles=["researcher"]),
        "carol (admin)": UserFactory(username="carol", roles=["admin"]),
    }


def _existing_objects() -> dict[str, int]:
    """Real rows for the views that hide themselves with 404s: for those, the right role's
    request must find its object, or a 404 could not tell the gate from a missing row."""
    model = PolicyModelFactory()
    job = GenerationJobFactory(model=model, status="failed")
    queue = make_queue(prompts=1, k=2)
    run = TrainingRunFactory(status="failed")
    scoring = RewardScoring.objects.create(reward_run=run, job=job, total=1, status="failed")
    evaluation = Evaluation.objects.create(
        name="perms", prompt_set=job.prompt_set, status=Evaluation.Status.FAILED
    )
    for position in range(2):  # an evaluation compares two models or more
        other = PolicyModelFactory()
        EvaluationEntry.objects.create(
            evaluation=evaluation,
            model=other,
            job=GenerationJobFactory(model=other, prompt_set=job.prompt_set, status="failed"),
            position=position,
        )
    return {
        "models": model.pk,
        "prompt-sets": job.prompt_set.pk,
        "jobs": job.pk,
        "tasks": queue.tasks.get().pk,  # type: ignore[attr-defined]
        "runs": run.pk,
        "scorings": scoring.pk,
        "evaluations": evaluation.pk,
    }


MISSING = 987654  # a pk no row has: the gate answers before the view looks it up


def _url(endpoint: Endpoint, objects: dict[str, int] | None) -> str:
    url = "/" + endpoint.route
    while "<" in url:
        start, end = url.index("<"), url.index(">") + 1
        pk = MISSING
        if objects is not None:
            pk = objects[url[:start].rstrip("/").rsplit("/", 1)[-1]]
        url = url[:start] + str(pk) + url[end:]
    return url


def _refused(response: HttpResponseBase, access: Access) -> bool:
    if access.api:
        return response.status_code in (401, 403) or (access.hidden and response.status_code == 404)
    return response.status_code == 403 or _to_login(response)


def _to_login(response: HttpResponseBase) -> bool:
    login = resolve_url(settings.LOGIN_URL)
    return response.status_code == 302 and response["Location"].startswith(f"{login}?next=")


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", GUARDED, ids=str)
def test_it_lets_through_exactly_the_roles_a_view_declares(endpoint: Endpoint) -> None:
    access = declared_access(endpoint.callback)
    assert access is not None
    url = _url(endpoint, _existing_objects() if access.hidden else None)
    view_class = _api_view_class(endpoint.callback)
    for who, user in _cast().items():
        client = Client()
        if user is not None:
            client.force_login(user)
        for method in ("GET", "POST"):
            response = client.generic(method, url)
            roles = access.roles_for(method)
            if view_class is not None and not hasattr(view_class, method.lower()):
                roles = access.roles  # a method the view lacks is a 405 past the gate
            where = f"{method} {url} as {who}: {response.status_code}"
            if user is None:
                expected = (401, 403) if access.api else (302,)
                assert response.status_code in expected, where
                assert access.api or _to_login(response), where
            elif roles and not user_has_role(user, roles):
                # Hidden views answer 404 to those who may not even read them; a reader
                # who may not write learns nothing new from a 403.
                reader = user_has_role(user, access.roles)
                denied = 404 if access.hidden and not reader else 403
                assert response.status_code == denied, where
            else:
                assert not _refused(response, access), where


@pytest.mark.django_db
def test_it_keeps_the_admin_site_to_staff(alice, carol, dave) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    for user in (alice, dave):
        client.force_login(user)
        assert client.get("/admin/")["Location"].startswith("/admin/login/")
    client.force_login(carol)
    assert client.get("/admin/").status_code == 200
