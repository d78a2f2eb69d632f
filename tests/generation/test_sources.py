from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation import services
from generation.models import PolicyModel
from generation.sources import ModelSourceError, model_source_resolve


def test_it_keeps_hub_ids(tmp_path: Path) -> None:
    assert model_source_resolve("gpt2", [tmp_path]) == "gpt2"
    assert model_source_resolve("Qwen/Qwen2.5-0.5B-Instruct", [tmp_path]) == (
        "Qwen/Qwen2.5-0.5B-Instruct"
    )


def test_it_resolves_a_relative_path_against_the_first_root(tmp_path: Path) -> None:
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    assert model_source_resolve("models/tiny", [tmp_path]) == str(tmp_path / "models" / "tiny")
    assert model_source_resolve("./later", [tmp_path]) == str(tmp_path / "later")


@pytest.mark.parametrize("source", ["/etc/passwd", "../../etc", "models/../../x", "~/weights", "/"])
def test_it_refuses_paths_outside_the_roots(tmp_path: Path, source: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ModelSourceError, match="must lie under"):
        model_source_resolve(source, [root])


def test_it_accepts_any_configured_root(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert model_source_resolve(str(b / "m"), [a, b]) == str(b / "m")


def test_it_follows_symlinks_before_checking(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to("/etc")
    with pytest.raises(ModelSourceError):
        model_source_resolve("escape", [root])


@pytest.mark.django_db
def test_it_stores_the_absolute_path_and_refuses_etc_over_the_api(
    carol, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.PREFLAB_MODEL_ROOTS = [tmp_path]
    (tmp_path / "weights").mkdir()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=carol).key}")
    bad = api.post(
        "/api/generation/models/",
        {"name": "etc", "backend": "transformers", "source": "/etc/passwd"},
        format="json",
    )
    assert bad.status_code == 400 and "must lie under" in bad.json()["detail"]
    ok = api.post(
        "/api/generation/models/",
        {"name": "mine", "backend": "transformers", "source": "weights"},
        format="json",
    )
    assert ok.status_code == 201, ok.content
    assert PolicyModel.objects.get().source == str(tmp_path / "weights")


@pytest.mark.django_db
def test_it_refuses_dot_dot_in_the_service(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.PREFLAB_MODEL_ROOTS = [tmp_path]
    with pytest.raises(services.GenerationError, match="must lie under"):
        services.policy_model_create(name="x", backend="vllm", source="../../etc")


def test_it_refuses_a_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    # Found by the API fuzz run: 500 characters pass as a hub id until the root is checked.
    with pytest.raises(ModelSourceError, match="not a usable path"):
        model_source_resolve("0" * 500, [tmp_path])
