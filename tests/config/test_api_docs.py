from __future__ import annotations

import re

import pytest
import yaml
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.labeling.factories import make_queue

pytestmark = pytest.mark.django_db


def _schema(client: Client) -> dict:  # type: ignore[type-arg]
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)  # type: ignore[no-any-return]


def test_it_serves_an_openapi_3_schema_of_every_endpoint(client: Client) -> None:
    schema = _schema(client)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for expected in (
        "/api/token/",
        "/api/generation/jobs/",
        "/api/generation/jobs/import/",
        "/api/labeling/queues/{id}/submit/",
        "/api/labeling/preferences/import/",
        "/api/training/runs/",
        "/api/training/evaluations/{id}/leaderboard/",
    ):
        assert expected in paths


def test_it_names_who_may_call_each_operation_and_its_errors(client: Client) -> None:
    schema = _schema(client)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert "**Who may call it:**" in operation["description"], (path, method)
            if method in ("post", "put", "patch"):
                assert "400" in operation["responses"], (path, method)
            if path not in ("/api/", "/api/token/", "/api/schema/"):
                assert {"401", "403"} <= set(operation["responses"]), (path, method)
    submit = schema["paths"]["/api/labeling/queues/{id}/submit/"]["post"]
    assert "annotators" in submit["description"] and "409" in submit["responses"]


def test_it_paginates_every_list_the_same_way(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    schema = _schema(client)
    lists = [
        path
        for path, item in schema["paths"].items()
        if "get" in item and any(p["name"] == "page" for p in item["get"].get("parameters", []))
    ]
    assert len(lists) >= 12
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=carol).key}")
    for path in lists:
        url = re.sub(r"\{id\}", "1", path)
        response = api.get(url)
        if response.status_code == 404:
            continue  # an object-scoped list whose object does not exist here
        assert response.status_code == 200, (path, response.content)
        assert set(response.json()) == {"count", "next", "previous", "results"}, path


def test_it_serves_the_docs_page_from_local_assets(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    scripts = re.findall(r'src="([^"]+)"', html)
    assert scripts and all(src.startswith("/") for src in scripts), scripts
    assert "<script>" not in html  # nothing inline: the CSP allows only our own files
    for src in scripts:
        assert client.get(src).status_code == 200, src
    assert "cdn" not in html.lower()


def test_it_lists_the_api_sections_at_the_root(client: Client) -> None:
    body = client.get("/api/").json()
    assert body["docs"].endswith("/api/docs/") and body["schema"].endswith("/api/schema/")
    assert body["runs"].endswith("/api/training/runs/")


def test_it_lets_researchers_list_queues_read_only(dave) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=dave).key}")
    assert [q["name"] for q in api.get("/api/labeling/queues/").json()["results"]] == [queue.name]
    assert api.post(f"/api/labeling/queues/{queue.pk}/next/").status_code == 403
