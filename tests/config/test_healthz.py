from __future__ import annotations

import pytest
from django.test import Client

from config import health


@pytest.mark.django_db
def test_it_reports_database_and_broker_ok(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True


@pytest.mark.django_db
def test_it_returns_503_naming_an_unreachable_broker(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real connection attempt to a port where nothing listens.
    monkeypatch.setattr(health, "broker_ping", _ping_unreachable_redis)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["error"]


def _ping_unreachable_redis() -> None:
    from kombu import Connection

    with Connection("redis://127.0.0.1:1/0", connect_timeout=1) as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


@pytest.mark.django_db
def test_it_rejects_post(client: Client) -> None:
    assert client.post("/healthz").status_code == 405
