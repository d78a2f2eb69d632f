from __future__ import annotations

import io
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from config.roles import user_roles

User = get_user_model()
pytestmark = pytest.mark.django_db


def _run(*args: str, stdin: str = "") -> str:
    out = io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command("users", *args, stdout=out)
    finally:
        sys.stdin = old
    return out.getvalue()


def test_it_adds_a_user_and_prints_a_set_password_link() -> None:
    out = _run("add", "hana", "--role", "researcher", "--base-url", "https://preflab.example.org")
    assert "created hana (researcher)" in out
    assert "https://preflab.example.org/accounts/set-password/" in out
    assert user_roles(User.objects.get(username="hana")) == {"researcher"}


def test_it_adds_a_user_with_a_password_from_stdin() -> None:
    _run("add", "ivan", "--role", "annotator", "--password-stdin", stdin="a long enough secret\n")
    assert User.objects.get(username="ivan").check_password("a long enough secret")


def test_it_refuses_a_weak_password_and_a_duplicate(alice) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="too short"):
        _run("add", "jo", "--role", "annotator", "--password-stdin", stdin="abc\n")
    with pytest.raises(CommandError, match="already exists"):
        _run("add", "alice", "--role", "annotator")


def test_it_sets_roles_deactivates_and_manages_tokens(alice) -> None:  # type: ignore[no-untyped-def]
    _run("role", "alice", "admin")
    alice.refresh_from_db()
    assert alice.is_staff and user_roles(alice) == {"admin"}
    key = _run("token", "alice").strip()
    assert Token.objects.get(user=alice).key == key
    assert _run("token", "alice").strip() == key
    assert _run("token", "alice", "--rotate").strip() != key
    assert "alice\tadmin\tactive\ttoken" in _run("list")
    _run("deactivate", "alice")
    alice.refresh_from_db()
    assert not alice.is_active and not Token.objects.filter(user=alice).exists()
    _run("activate", "alice")
    alice.refresh_from_db()
    assert alice.is_active


def test_it_names_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        _run("role", "nobody", "annotator")
