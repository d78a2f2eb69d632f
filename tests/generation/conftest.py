"""vLLM fixtures: an in-process engine environment and a real OpenAI-compatible server.

The ``vllm`` marker's skip-or-fail rule lives in tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
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
        # A session of its own: the server starts an EngineCore process of its own, which must
        # go with it (an orphan left behind would outlive the module and could signal a pid
        # that another test's process has reused by then).
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
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
        _stop_session(server)


def _stop_session(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM every process of ``server``'s session (the server and the engine it started),
    then SIGKILL what is left after 30 s; returns once none is left."""
    for sig, grace_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if server.poll() is not None:
                try:
                    os.killpg(server.pid, 0)  # anyone left in the group?
                except ProcessLookupError:
                    return
            time.sleep(0.1)
    server.wait()
