from __future__ import annotations

from django.test import Client

from generation.models import PolicyModel
from tests.generation.factories import PolicyModelFactory


def test_it_lists_models_for_admins(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    PolicyModelFactory(name="llama-sft")
    client.force_login(carol)
    response = client.get("/generation/models/")
    assert response.status_code == 200
    assert b"llama-sft" in response.content
    assert b"Register a model" in response.content


def test_it_registers_a_model(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/generation/models/",
        {
            "name": "served",
            "backend": "openai",
            "server_url": "http://127.0.0.1:8001/v1",
            "server_model": "tiny",
        },
    )
    model = PolicyModel.objects.get(name="served")
    assert response.status_code == 302 and response["Location"] == model.get_absolute_url()
    assert model.created_by == carol


def test_it_explains_a_missing_server_url(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post("/generation/models/", {"name": "served", "backend": "openai"})
    assert response.status_code == 200
    assert b"needs a server URL" in response.content
    assert not PolicyModel.objects.exists()


def test_it_lets_researchers_read_but_not_register(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    client.force_login(dave)
    assert client.get("/generation/models/").status_code == 200
    response = client.post(
        "/generation/models/", {"name": "x", "backend": "transformers", "source": "/m"}
    )
    assert response.status_code == 403
    assert not PolicyModel.objects.exists()


def test_it_hides_models_from_annotators(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    model = PolicyModelFactory()
    client.force_login(alice)
    assert client.get("/generation/models/").status_code == 403
    assert client.get(f"/generation/models/{model.pk}/").status_code == 403


def test_it_rejects_put(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    assert client.put("/generation/models/").status_code == 405


def test_it_404s_an_unknown_model(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    assert client.get("/generation/models/999999/").status_code == 404
