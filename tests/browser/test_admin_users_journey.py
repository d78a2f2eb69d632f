"""An admin adds two annotators and a researcher from the browser; one annotator sets their
password through the one-time link, the researcher reads the API docs. No page breaks the
Content-Security-Policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from config.roles import user_roles
from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.labeling.factories import make_queue

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(os.environ.get("PREFLAB_SCREENSHOT_DIR", "var/screenshots"))


def _shoot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Desktop and phone pictures of the page, for a person to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def _add_user(page, username: str, role: str, password: str = "") -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.org")
    page.select_option("select[name=role]", role)
    if password:
        page.fill("input[name=password]", password)
    page.get_by_role("button", name="Add user").click()
    page.wait_for_selector(f"h1:has-text('{username}')")


def test_it_lets_an_admin_add_annotators_and_a_researcher(  # type: ignore[no-untyped-def]
    page, browser, live_server, carol
) -> None:
    violations: list[str] = []
    page.on(
        "console",
        lambda m: (
            violations.append(f"{page.url}: {m.text[:90]}")
            if "Content Security Policy" in m.text
            else None
        ),
    )
    queue = make_queue(mode="pairwise", k=2)
    login(page, live_server, "carol", PASSWORD)

    _add_user(page, "erin", "annotator", password="erin has a long password")
    _add_user(page, "frank", "annotator")
    page.get_by_role("button", name="Make a link").click()
    link = page.locator("#set-password-link").inner_text().strip()
    _shoot(page, "user-detail")
    _add_user(page, "grace", "researcher", password="grace has a long password")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    _shoot(page, "user-list")

    User = get_user_model()
    assert user_roles(User.objects.get(username="erin")) == {"annotator"}
    assert user_roles(User.objects.get(username="frank")) == {"annotator"}
    assert user_roles(User.objects.get(username="grace")) == {"researcher"}

    page.goto(f"{live_server.url}/labeling/queues/{queue.pk}/annotators/")
    page.get_by_label("erin").check()
    _shoot(page, "queue-annotators")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector(f"text={queue.name} is open to erin")
    assert [u.username for u in queue.annotators.all()] == ["erin"]

    # frank sets his password through the link, in a fresh browser context.
    visitor = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    visitor.goto(link)
    visitor.fill("input[name=new_password1]", "frank chose this one")
    visitor.fill("input[name=new_password2]", "frank chose this one")
    visitor.get_by_role("button", name="Set password").click()
    visitor.wait_for_selector("text=Your password is set")
    login(visitor, live_server, "frank", "frank chose this one")
    visitor.context.close()

    # grace, the researcher, reads the API docs and makes herself a token.
    page.get_by_role("button", name="Log out").click()
    login(page, live_server, "grace", "grace has a long password")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API").click()
    page.wait_for_selector("text=Preflab API")
    page.wait_for_selector("text=/api/labeling/snapshots/")
    _shoot(page, "api-docs")
    page.goto(f"{live_server.url}/accounts/me/")
    page.get_by_role("button", name="Create a token").click()
    assert len(page.locator("#token-key").inner_text().strip()) == 40
    _shoot(page, "me")
    assert violations == [], "\n".join(violations)
