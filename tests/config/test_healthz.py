from __future__ import annotations

import pytest
from django.test import Client

from config import health


@pytest.mark.django_db
def test_it_says_only_ok_to_anonymous_callers(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_shows_admins_each_check(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True


@pytest.mark.django_db
def test_it_returns_503_without_the_error_text_to_the_public(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real connection attempt to a port where nothing listens.
    monkeypatch.setattr(health, "broker_ping", _ping_unreachable_redis)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing"}
    assert b"127.0.0.1" not in response.content and b"Error" not in response.content


@pytest.mark.django_db
def test_it_names_the_unreachable_broker_to_admins(
    client: Client, carol, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(health, "broker_ping", _ping_unreachable_redis)
    client.force_login(carol)
    body = client.get("/healthz").json()
    assert body["status"] == "failing"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["error"]


@pytest.mark.django_db
def test_it_hides_the_checks_from_researchers(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    client.force_login(dave)
    assert client.get("/healthz").json() == {"status": "ok"}


def _ping_unreachable_redis() -> None:
    from kombu import Connection

    with Connection("redis://127.0.0.1:1/0", connect_timeout=1) as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


@pytest.mark.django_db
def test_it_rejects_post(client: Client) -> None:
    assert client.post("/healthz").status_code == 405
