"""A model with several OpenAI-compatible servers, and vLLM's tensor parallelism as a model
setting: the page, the API and the admin store and check them alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from generation import services
from generation.models import PolicyModel
from tests.factories import UserFactory

SERVERS = ["http://gpu1:8000/v1", "http://gpu2:8000/v1", "https://gpu3.example/v1"]


def test_it_registers_a_model_with_several_servers_on_the_page(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/generation/models/",
        {
            "name": "served",
            "backend": "openai",
            "server_url": SERVERS[0],
            # A bare host:port is taken as plain HTTP, as inside a cluster.
            "extra_server_urls": f"gpu2:8000/v1\n\n  {SERVERS[2]}  \n",
            "server_model": "tiny",
        },
    )
    model = PolicyModel.objects.get(name="served")
    assert response.status_code == 302 and response["Location"] == model.get_absolute_url()
    assert model.server_urls == SERVERS
    assert model.tensor_parallel_size == 1
    page = client.get(model.get_absolute_url())
    assert page.status_code == 200
    for url in SERVERS:
        assert f"<code>{url}</code>".encode() in page.content
    assert b"(+2)" in client.get("/generation/models/").content


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"extra_server_urls": "ftp://gpu2/v1"}, b"is not an http:// or https:// URL"),
        ({"server_url": "http:///v1"}, b"is not an http:// or https:// URL"),
        ({"extra_server_urls": SERVERS[0]}, b"a server URL is named twice"),
        ({"tensor_parallel_size": "2"}, b"tensor_parallel_size is a setting of the vLLM backend"),
        ({"tensor_parallel_size": "0"}, b"greater than or equal to 1"),
    ],
)
def test_it_explains_bad_server_settings_on_the_page(
    client: Client, carol, fields: dict[str, str], message: bytes
) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    data = {"name": "served", "backend": "openai", "server_url": SERVERS[0], "server_model": "m"}
    response = client.post("/generation/models/", {**data, **fields})
    assert response.status_code == 200
    assert message in response.content
    assert not PolicyModel.objects.exists()


def test_it_refuses_servers_for_a_model_run_in_the_worker(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/generation/models/",
        {
            "name": "local",
            "backend": "transformers",
            "source": "org/tiny",
            "extra_server_urls": SERVERS[1],
        },
    )
    assert response.status_code == 200
    assert b"only an OpenAI-compatible model has servers" in response.content


def test_it_keeps_the_tensor_parallel_size_of_a_vllm_model(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    response = client.post(
        "/generation/models/",
        {"name": "big", "backend": "vllm", "source": "org/big", "tensor_parallel_size": "4"},
    )
    model = PolicyModel.objects.get(name="big")
    assert response.status_code == 302
    assert model.tensor_parallel_size == 4
    assert services.policy_model_backend_spec(model).tensor_parallel_size == 4
    assert b"4 GPUs per engine" in client.get(model.get_absolute_url()).content


def test_it_registers_several_servers_through_the_api(carol) -> None:  # type: ignore[no-untyped-def]
    api = APIClient()
    api.force_authenticate(carol)
    created = api.post(
        "/api/generation/models/",
        {
            "name": "served",
            "backend": "openai",
            "server_url": SERVERS[0],
            "extra_server_urls": SERVERS[1:],
            "server_model": "tiny",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = api.get(f"/api/generation/models/{created.json()['id']}/").json()
    assert body["extra_server_urls"] == SERVERS[1:] and body["tensor_parallel_size"] == 1
    spec = services.policy_model_backend_spec(PolicyModel.objects.get(name="served"))
    assert spec.server_urls == tuple(SERVERS)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"extra_server_urls": "http://gpu2:8000/v1"}, "extra_server_urls"),
        ({"extra_server_urls": ["not a url"]}, "is not an http:// or https:// URL"),
        ({"extra_server_urls": [["nested"]]}, "extra_server_urls"),
        ({"extra_server_urls": [SERVERS[0]]}, "named twice"),
        ({"extra_server_urls": [f"http://gpu{i}/v1" for i in range(70)]}, "extra_server_urls"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"tensor_parallel_size": "two"}, "tensor_parallel_size"),
        ({"tensor_parallel_size": 2}, "setting of the vLLM backend"),
    ],
)
def test_it_answers_bad_server_settings_with_a_400(carol, fields, problem) -> None:  # type: ignore[no-untyped-def]
    api = APIClient()
    api.force_authenticate(carol)
    data = {"name": "served", "backend": "openai", "server_url": SERVERS[0], "server_model": "m"}
    response = api.post("/api/generation/models/", {**data, **fields}, format="json")
    assert response.status_code == 400
    assert problem in str(response.json())
    assert not PolicyModel.objects.exists()


@pytest.fixture
def staff_client(db) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_it_checks_servers_edited_in_the_admin(staff_client: Client) -> None:
    model = services.policy_model_create(
        name="served", backend="openai", server_url=SERVERS[0], server_model="m"
    )
    url = f"/admin/generation/policymodel/{model.pk}/change/"
    data = {
        "name": "served",
        "backend": "openai",
        "server_url": SERVERS[0],
        "server_model": "m",
        "tensor_parallel_size": "1",
        "description": "",
    }
    refused = staff_client.post(url, {**data, "extra_server_urls": '["ftp://gpu2/v1"]'})
    assert refused.status_code == 200
    assert b"is not an http:// or https:// URL" in refused.content
    saved = staff_client.post(url, {**data, "extra_server_urls": f'["{SERVERS[1]}"]'})
    assert saved.status_code == 302
    model.refresh_from_db()
    assert model.server_urls == SERVERS[:2]


@pytest.mark.vllm
def test_it_passes_the_tensor_parallel_size_to_vllms_engine_args(
    tiny_model_path: Path, vllm_env: None
) -> None:
    from vllm.engine.arg_utils import EngineArgs

    from generation.backends import BackendSpec
    from generation.backends.vllm import vllm_engine_kwargs

    names = {f.name for f in dataclasses.fields(EngineArgs)}
    for size, on_gpu in ((1, False), (4, True)):
        spec = BackendSpec(kind="vllm", source=str(tiny_model_path), tensor_parallel_size=size)
        kwargs = vllm_engine_kwargs(spec, on_gpu=on_gpu)
        assert set(kwargs) <= names  # every one is an engine argument of this vLLM
        engine = EngineArgs(**kwargs)
        assert engine.tensor_parallel_size == size
        # One GPU: vLLM's single-process executor; more: vLLM picks its own.
        assert (engine.distributed_executor_backend == "uni") == (size == 1)
