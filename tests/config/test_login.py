from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import PASSWORD


def test_it_redirects_anonymous_users_to_login(client: Client, db: None) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_shows_the_login_form(client: Client, db: None) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


@pytest.mark.parametrize("who", ["alice", "carol", "dave"])
def test_it_logs_in_each_role(client: Client, who: str, request: pytest.FixtureRequest) -> None:
    user = request.getfixturevalue(who)
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_it_rejects_a_wrong_password(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_it_shows_navigation_by_role(client: Client, alice, carol, dave) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert 'href="/labeling/"' in page
    assert "/generation/models/" not in page
    client.force_login(carol)
    page = client.get("/").content.decode()
    assert "/generation/models/" in page
    assert 'href="/accounts/users/"' in page
    client.force_login(dave)
    page = client.get("/").content.decode()
    assert "/generation/prompt-sets/" in page
    assert "/generation/models/" not in page
    assert "/accounts/users/" not in page
    assert 'href="/api/docs/"' in page


def test_it_logs_out_with_post_only(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302
