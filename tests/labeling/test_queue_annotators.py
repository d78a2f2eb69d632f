from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling import services
from labeling.models import Assignment
from tests.labeling.factories import make_queue

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_it_restricts_a_queue_to_the_chosen_annotators(client: Client, carol, alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    client.force_login(carol)
    page = client.get(f"/labeling/queues/{queue.pk}/annotators/")
    assert page.status_code == 200 and b"alice" in page.content and b"bob" in page.content
    response = client.post(f"/labeling/queues/{queue.pk}/annotators/", {"annotators": [alice.pk]})
    assert response.status_code == 302
    assert list(queue.annotators.all()) == [alice]
    assert _api(alice).post(f"/api/labeling/queues/{queue.pk}/next/").status_code == 200
    assert _api(bob).post(f"/api/labeling/queues/{queue.pk}/next/").status_code == 404
    assert _api(bob).get("/api/labeling/queues/").json()["count"] == 0
    client.force_login(bob)
    assert client.get(f"/labeling/queues/{queue.pk}/").status_code == 404
    assert not Assignment.objects.filter(annotator=bob).exists()


def test_it_opens_the_queue_again_when_none_is_ticked(client: Client, carol, alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    queue.annotators.set([alice])
    client.force_login(carol)
    client.post(f"/labeling/queues/{queue.pk}/annotators/", {})
    assert not queue.annotators.exists()
    assert _api(bob).post(f"/api/labeling/queues/{queue.pk}/next/").status_code == 200


def test_it_refuses_the_claim_in_the_service_too(alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    services.queue_annotators_set(queue=queue, annotators=[alice])
    with pytest.raises(services.LabelingError, match="open only to"):
        services.task_claim_next(queue=queue, user=bob)
    assert services.task_claim_next(queue=queue, user=alice) is not None


def test_it_lets_only_admins_choose(client: Client, alice, dave) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    for user in (alice, dave):
        client.force_login(user)
        assert client.get(f"/labeling/queues/{queue.pk}/annotators/").status_code == 403
        assert client.post(f"/labeling/queues/{queue.pk}/annotators/", {}).status_code == 403


def test_it_rejects_an_unknown_annotator(client: Client, carol, dave) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    client.force_login(carol)
    response = client.post(f"/labeling/queues/{queue.pk}/annotators/", {"annotators": [dave.pk]})
    assert response.status_code == 400
    assert not queue.annotators.exists()
