"""The OpenAI-compatible backend against a real vLLM server, and against a failing peer."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from generation.backends import BackendError, BackendSpec, SamplingParams
from generation.backends.openai import OpenAIBackend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "HF_HUB_OFFLINE": "1",
    }
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(tiny_model_path),
                "--served-model-name",
                "tiny",
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
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        backend = OpenAIBackend(BackendSpec(kind="openai", server_url=url, server_model="tiny"))
        try:
            backend.wait_until_ready(timeout=240)
        except BackendError:
            pytest.fail(f"vLLM server did not start:\n{log.read_text()[-3000:]}")
        finally:
            backend.close()
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.vllm
@pytest.mark.slow
def test_it_completes_and_chats_against_a_real_vllm_server(vllm_server: str) -> None:
    backend = OpenAIBackend(BackendSpec(kind="openai", server_url=vllm_server, server_model="tiny"))
    prompts = ["Once upon a", [{"role": "user", "content": "Tell me a story."}], "Hello"]
    result = backend.generate(prompts, 3, SamplingParams(max_new_tokens=8, seed=5))
    backend.close()
    assert [len(group) for group in result] == [3, 3, 3]
    for group in result:
        assert all(isinstance(s.text, str) and s.finish_reason in {"stop", "length"} for s in group)
        assert group[0].prompt_tokens and group[0].prompt_tokens > 0
        assert group[0].completion_tokens is not None and 0 < group[0].completion_tokens <= 8


class _Failing(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "overloaded"}')

    def log_message(self, *args: object) -> None:
        pass


def test_it_retries_a_failing_server_then_says_why() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    backend = OpenAIBackend(
        BackendSpec(
            kind="openai",
            server_url=url,
            server_model="m",
            options={"max_retries": 2, "backoff": 0.01},
        )
    )
    try:
        with pytest.raises(BackendError, match="failed after 3 attempts.*HTTP 503"):
            backend.generate(["hi"], 2, SamplingParams())
    finally:
        backend.close()
        server.shutdown()
    assert _Failing.calls == 3


def test_it_fails_fast_on_a_refused_connection() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    backend = OpenAIBackend(
        BackendSpec(
            kind="openai",
            server_url=url,
            server_model="m",
            options={"max_retries": 1, "backoff": 0.01},
        )
    )
    start = time.monotonic()
    with pytest.raises(BackendError, match="ConnectError"):
        backend.generate(["hi"], 1, SamplingParams())
    assert time.monotonic() - start < 10


def test_it_needs_a_server_url_and_model() -> None:
    with pytest.raises(BackendError, match="server URL"):
        OpenAIBackend(BackendSpec(kind="openai", server_url="", server_model=""))
