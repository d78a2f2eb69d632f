"""Labels, and the prompt a task shows, are read-only in the Django admin."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from labeling.models import Comparison, LabelingTask, Ranking
from labeling.preference_import import preferences_import
from tests.factories import UserFactory


@pytest.fixture
def staff_client(db) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def imported(db) -> Comparison:  # type: ignore[no-untyped-def]
    row = {"prompt": "Sky?", "chosen": "Blue", "rejected": "Green", "margin": 2}
    preferences_import(data=json.dumps(row), format="trl", name="labels")
    return Comparison.objects.get()


@pytest.mark.parametrize("model", ["comparison", "ranking", "demonstration"])
def test_it_lets_staff_look_at_labels_but_not_add_them(staff_client: Client, model: str) -> None:
    assert staff_client.get(f"/admin/labeling/{model}/").status_code == 200
    assert staff_client.get(f"/admin/labeling/{model}/add/").status_code == 403


def test_it_never_changes_or_deletes_a_label(staff_client: Client, imported: Comparison) -> None:
    url = f"/admin/labeling/comparison/{imported.pk}/change/"
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"margin": -5, "is_tie": "on"}).status_code == 403
    ranking = Ranking.objects.get()
    ranking_url = f"/admin/labeling/ranking/{ranking.pk}/change/"
    assert staff_client.post(ranking_url, {"order": "[]"}).status_code == 403
    delete = f"/admin/labeling/comparison/{imported.pk}/delete/"
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    again = Comparison.objects.get()
    assert (again.margin, again.imported_margin, again.is_tie, Ranking.objects.get().order) == (
        1.0,
        2.0,
        False,
        ranking.order,
    )


def test_it_keeps_a_tasks_prompt_read_only(staff_client: Client, imported: Comparison) -> None:
    task = LabelingTask.objects.get()
    page = staff_client.get(f"/admin/labeling/labelingtask/{task.pk}/change/").content.decode()
    assert 'name="prompt"' not in page and 'name="queue"' not in page
    assert staff_client.get("/admin/labeling/labelingtask/add/").status_code == 403
