from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from rest_framework.authtoken.models import Token

from config.roles import user_roles

User = get_user_model()
pytestmark = pytest.mark.django_db


def test_it_lets_an_admin_add_a_user_with_a_role(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    assert client.get("/accounts/users/").status_code == 200
    response = client.post(
        "/accounts/users/",
        {"username": "erin", "email": "erin@example.org", "role": "researcher", "password": ""},
    )
    assert response.status_code == 302
    erin = User.objects.get(username="erin")
    assert user_roles(erin) == {"researcher"}
    assert not erin.has_usable_password() and erin.is_active and not erin.is_staff


def test_it_makes_an_admin_staff_and_takes_it_back(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    client.post("/accounts/users/", {"username": "fay", "role": "admin", "password": ""})
    fay = User.objects.get(username="fay")
    assert fay.is_staff and user_roles(fay) == {"admin"}
    response = client.post(
        f"/accounts/users/{fay.pk}/",
        {"action": "update", "role": "annotator", "email": "", "is_active": "on"},
    )
    assert response.status_code == 302
    fay = User.objects.get(username="fay")
    assert not fay.is_staff and user_roles(fay) == {"annotator"}


def test_it_refuses_a_duplicate_or_invalid_username(client: Client, carol, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    duplicate = client.post("/accounts/users/", {"username": "ALICE", "role": "annotator"})
    assert duplicate.status_code == 200 and b"already exists" in duplicate.content
    bad = client.post("/accounts/users/", {"username": "a\x00b", "role": "annotator"})
    assert bad.status_code == 200 and b"Null characters are not allowed" in bad.content
    assert User.objects.filter(username__startswith="a").count() == 1


def test_it_validates_a_chosen_password(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/accounts/users/", {"username": "gil", "role": "annotator", "password": "123"}
    )
    assert b"too short" in response.content
    assert not User.objects.filter(username="gil").exists()


def test_it_deactivates_a_user_and_revokes_their_token(client: Client, carol, alice) -> None:  # type: ignore[no-untyped-def]
    Token.objects.create(user=alice)
    client.force_login(carol)
    response = client.post(
        f"/accounts/users/{alice.pk}/", {"action": "update", "role": "annotator", "email": ""}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert not alice.is_active
    assert not Token.objects.filter(user=alice).exists()


def test_it_will_not_let_an_admin_deactivate_themselves(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        f"/accounts/users/{carol.pk}/", {"action": "update", "role": "admin", "email": ""}
    )
    assert response.status_code == 400
    carol.refresh_from_db()
    assert carol.is_active


def test_it_makes_a_one_time_set_password_link(client: Client, carol, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    page = client.post(f"/accounts/users/{alice.pk}/", {"action": "link"}).content.decode()
    link = page.split('id="set-password-link">')[1].split("<")[0]
    assert link.startswith("http://testserver/accounts/set-password/")
    path = link.removeprefix("http://testserver")
    visitor = Client()
    form = visitor.get(path, follow=True)  # Django swaps the token for a session marker
    assert form.status_code == 200 and b"new_password1" in form.content
    done = visitor.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a fresh long password", "new_password2": "a fresh long password"},
    )
    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a fresh long password")
    again = Client().get(path, follow=True)
    assert b"already used or has expired" in again.content


def test_it_mails_the_link_through_the_email_backend(client: Client, carol, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(f"/accounts/users/{alice.pk}/", {"action": "send-link"})
    assert response.status_code == 200
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.org"]
    assert "/accounts/set-password/" in mail.outbox[0].body


def test_it_lets_an_admin_set_a_password(client: Client, carol, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        f"/accounts/users/{alice.pk}/",
        {
            "action": "password",
            "new_password1": "another long one",
            "new_password2": "another long one",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another long one")


def test_it_lets_an_admin_revoke_a_token(client: Client, carol, dave) -> None:  # type: ignore[no-untyped-def]
    Token.objects.create(user=dave)
    client.force_login(carol)
    page = client.get(f"/accounts/users/{dave.pk}/").content.decode()
    assert "created" in page.split('id="user-token">')[1].split("</dd>")[0]
    client.post(f"/accounts/users/{dave.pk}/", {"action": "revoke-token"})
    assert not Token.objects.filter(user=dave).exists()


def test_it_refuses_non_admins(client: Client, alice, dave) -> None:  # type: ignore[no-untyped-def]
    for user in (alice, dave):
        client.force_login(user)
        assert client.get("/accounts/users/").status_code == 403
        assert (
            client.post("/accounts/users/", {"username": "x", "role": "admin"}).status_code == 403
        )
        assert client.get(f"/accounts/users/{user.pk}/").status_code == 403
    assert not User.objects.filter(username="x").exists()


def test_it_sends_anonymous_visitors_to_the_login_page(client: Client) -> None:
    response = client.get("/accounts/users/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_rejects_put_and_unknown_actions(client: Client, carol, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    assert client.put("/accounts/users/").status_code == 405
    assert client.post(f"/accounts/users/{alice.pk}/", {"action": "explode"}).status_code == 400


def test_it_answers_404_for_an_unknown_user(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    assert client.get("/accounts/users/999999/").status_code == 404
