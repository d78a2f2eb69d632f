from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def _key(page: str) -> str:
    match = re.search(r'id="token-key"[^>]*>([0-9a-f]+)<', page)
    assert match, "no token on the page"
    return match.group(1)


def test_it_creates_shows_and_rotates_the_users_token(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    client.force_login(dave)
    assert b"You have no token" in client.get("/accounts/me/").content
    page = client.post("/accounts/me/", {"action": "token", "token_action": "issue"})
    key = _key(page.content.decode())
    assert Token.objects.get(user=dave).key == key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/labeling/snapshots/").status_code == 200
    rotated = client.post("/accounts/me/", {"action": "token", "token_action": "rotate"})
    new_key = _key(rotated.content.decode())
    assert new_key != key
    assert api.get("/api/labeling/snapshots/").status_code == 401


def test_it_revokes_the_token(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    Token.objects.create(user=dave)
    client.force_login(dave)
    client.post("/accounts/me/", {"action": "token", "token_action": "revoke"})
    assert not Token.objects.filter(user=dave).exists()


def test_it_changes_the_password_and_keeps_the_session(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    response = client.post(
        "/accounts/me/",
        {
            "action": "password",
            "old_password": PASSWORD,
            "new_password1": "my new long password",
            "new_password2": "my new long password",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("my new long password")
    assert client.get("/accounts/me/").status_code == 200


def test_it_refuses_a_wrong_old_password(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    response = client.post(
        "/accounts/me/",
        {
            "action": "password",
            "old_password": "wrong",
            "new_password1": "my new long password",
            "new_password2": "my new long password",
        },
    )
    assert response.status_code == 400
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_it_needs_a_login(client: Client) -> None:
    assert client.get("/accounts/me/").status_code == 302


def test_it_rejects_unknown_actions(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    assert client.post("/accounts/me/", {"action": "token", "token_action": "x"}).status_code == 400
    assert client.delete("/accounts/me/").status_code == 405


def test_it_revokes_the_token_on_logout(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    Token.objects.create(user=alice)
    client.force_login(alice)
    client.post("/logout/")
    assert not Token.objects.filter(user=alice).exists()
