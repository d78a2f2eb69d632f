"""vLLM fixtures: an in-process engine environment and a real OpenAI-compatible server.

The ``vllm`` marker's skip-or-fail rule lives in tests/conftest.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from generation.backends.vllm import CPU_ENV_DEFAULTS
from tests.conftest import skip_or_fail_without_vllm

# The server's name for the tiny model; requests use it as "model".
SERVED_MODEL = "tiny"


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
