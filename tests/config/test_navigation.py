"""The main menu marks exactly the section a page belongs to; the favicon is served."""

from __future__ import annotations

import re

from django.test import Client

from config.navigation import nav_section_of
from demo.management.commands.seed_demo import DEMO_USERS, demo_logins_line


def test_it_maps_paths_to_one_section_by_longest_prefix() -> None:
    assert nav_section_of("/labeling/") == "label"
    assert nav_section_of("/labeling/3/label/") == "label"
    assert nav_section_of("/labeling/snapshots/") == "snapshots"
    assert nav_section_of("/labeling/snapshots/4/") == "snapshots"
    assert nav_section_of("/training/runs/1/") == "training"
    assert nav_section_of("/") == ""


def test_it_underlines_only_snapshots_on_a_snapshot_page(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    body = client.get("/labeling/snapshots/").content.decode()
    current = re.findall(r'<a href="([^"]+)" aria-current="true">', body)
    assert current == ["/labeling/snapshots/"]


def test_it_serves_a_favicon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert icon.getvalue()[:4] == b"\x00\x00\x01\x00"  # an ICO header


def test_it_prints_every_demo_login_at_start_up() -> None:
    line = demo_logins_line()
    for name, role, password in DEMO_USERS:
        assert f"{name} / {password} ({role})" in line
    assert "bob / bob-demo (annotator)" in line


def _pipeline_links(client: Client) -> list[str]:
    body = client.get("/").content.decode()
    pipeline = body[body.index('<ol class="pipeline"') : body.index("</ol>")]
    return re.findall(r'<a class="step" href="([^"]+)">', pipeline)


def test_it_links_each_pipeline_step_the_user_may_take(client: Client, carol, alice, dave) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    assert _pipeline_links(client) == [
        "/generation/jobs/",
        "/labeling/",
        "/training/runs/",
        "/training/rounds/",
    ]
    client.force_login(alice)  # an annotator labels, and only that
    assert _pipeline_links(client) == ["/labeling/"]
    client.force_login(dave)  # a researcher reads data and runs, and labels nothing
    assert _pipeline_links(client) == [
        "/generation/prompt-sets/",
        "/training/runs/",
        "/training/rounds/",
    ]
