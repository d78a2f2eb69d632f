from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from tests.factories import PASSWORD

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse  # the test client's response type

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle_and_lockouts() -> None:
    cache.clear()  # the throttle's counters
    from axes.models import AccessAttempt

    AccessAttempt.objects.all().delete()


def _token(username: str, password: str = PASSWORD) -> _MonkeyPatchedWSGIResponse:
    return APIClient().post("/api/token/", {"username": username, "password": password})


def test_it_gives_a_token_for_the_right_password(dave) -> None:  # type: ignore[no-untyped-def]
    response = _token("dave")
    assert response.status_code == 200
    body = response.json()
    assert body["token"] == Token.objects.get(user=dave).key
    assert body["expires"] is not None
    assert _token("dave").json()["token"] == body["token"]  # the same until it expires


def test_it_refuses_an_expired_token_and_issues_a_fresh_one(dave, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PREFLAB_TOKEN_TTL_DAYS = 30
    key = _token("dave").json()["token"]
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(days=31))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    refused = api.get("/api/labeling/snapshots/")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    fresh = _token("dave").json()["token"]
    assert fresh != key
    api.credentials(HTTP_AUTHORIZATION=f"Token {fresh}")
    assert api.get("/api/labeling/snapshots/").status_code == 200


def test_it_keeps_tokens_forever_when_the_ttl_is_zero(dave, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PREFLAB_TOKEN_TTL_DAYS = 0
    body = _token("dave").json()
    assert body["expires"] is None
    Token.objects.filter(key=body["token"]).update(created=timezone.now() - timedelta(days=3650))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert api.get("/api/labeling/snapshots/").status_code == 200


def test_it_revokes_the_token_on_delete(dave) -> None:  # type: ignore[no-untyped-def]
    key = _token("dave").json()["token"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.delete("/api/token/").status_code == 204
    assert api.get("/api/labeling/snapshots/").status_code == 401
    assert APIClient().delete("/api/token/").status_code == 401


def test_it_locks_out_after_repeated_wrong_passwords(dave, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 5
    for _ in range(5):
        assert _token("dave", "wrong").status_code == 400
    locked = _token("dave")
    assert locked.status_code != 200 and "token" not in locked.json()


def test_it_locks_the_login_page_too(client: Client, alice, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 5
    codes = [
        client.post("/login/", {"username": "alice", "password": "wrong"}).status_code
        for _ in range(5)
    ]
    assert codes == [200, 200, 200, 200, 429]  # the fifth failure locks
    right = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert right.status_code == 429
    assert b"Too many failed logins" in right.content
    assert "_auth_user_id" not in client.session


def test_it_forgets_failures_after_a_successful_login(client: Client, alice, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        client.post("/login/", {"username": "alice", "password": "wrong"})
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    client.post("/logout/")
    for _ in range(2):
        client.post("/login/", {"username": "alice", "password": "wrong"})
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302


def test_it_throttles_token_requests(dave, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
    codes = [_token("dave").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
