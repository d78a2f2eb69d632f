"""The OpenAI-compatible backend against a real vLLM server, and against our own test peers.

The peers are tiny ``http.server`` servers on loopback started by the tests: one that
echoes, one that always fails, one that refuses the request.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from generation.backends import BackendError, BackendSpec, SamplingParams
from generation.backends.base import PromptInput
from generation.backends.openai import OpenAIBackend
from tests.generation.conftest import SERVED_MODEL, free_port

CONVERSATION = [{"role": "user", "content": "Tell me a story."}]


def _backend(url: str, **options: object) -> OpenAIBackend:
    return OpenAIBackend(
        BackendSpec(kind="openai", server_url=url, server_model=SERVED_MODEL, options=options)
    )


@pytest.mark.vllm
@pytest.mark.slow
def test_it_completes_and_chats_against_a_real_vllm_server(
    vllm_server: str, tiny_model_path: Path
) -> None:
    from transformers import AutoTokenizer

    from generation.backends.prompting import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    backend = _backend(vllm_server)
    assert backend.wait_until_ready(timeout=5) == [SERVED_MODEL]
    prompts: list[PromptInput] = ["Once upon a time, in a land far away,", CONVERSATION, "Hello"]
    params = SamplingParams(max_new_tokens=8, seed=5)
    result = backend.generate(prompts, 3, params)
    assert [len(group) for group in result] == [3, 3, 3]
    # In prompt order: the server counted each prompt's tokens as our tokenizer does.
    assert [group[0].prompt_tokens for group in result] == [
        len(encode_prompt(tokenizer, p, False)) for p in prompts
    ]
    for group in result:
        assert all(isinstance(s.text, str) and s.finish_reason in {"stop", "length"} for s in group)
        assert group[0].completion_tokens is not None and 0 < group[0].completion_tokens <= 8
    assert len({s.text for s in result[0]}) > 1
    # The server's seed makes the call reproducible.
    again = backend.generate(prompts, 3, params)
    assert [[s.text for s in g] for g in again] == [[s.text for s in g] for g in result]
    # vLLM refuses n > 1 when greedy; the backend asks once and repeats the answer.
    greedy = backend.generate([CONVERSATION], 3, SamplingParams(temperature=0, max_new_tokens=4))
    assert len(greedy[0]) == 3 and len({s.text for s in greedy[0]}) == 1
    backend.close()


@pytest.mark.vllm
@pytest.mark.slow
def test_it_reports_an_unknown_model_without_retrying(vllm_server: str) -> None:
    backend = OpenAIBackend(
        BackendSpec(kind="openai", server_url=vllm_server, server_model="no-such-model")
    )
    start = time.monotonic()
    with pytest.raises(BackendError, match="refused the request \\(HTTP 404"):
        backend.generate(["Hi"], 1, SamplingParams(max_new_tokens=2))
    assert time.monotonic() - start < 5
    backend.close()


Handler = Callable[[http.server.BaseHTTPRequestHandler, dict[str, Any]], tuple[int, object]]


@pytest.fixture
def peer() -> Iterator[Callable[[Handler], tuple[str, list[dict[str, Any]]]]]:
    """Start a loopback HTTP server answering POSTs with ``handler``; yields a starter.

    The starter returns the base URL and the list of request bodies the server received.
    """
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(handler: Handler) -> tuple[str, list[dict[str, Any]]]:
        received: list[dict[str, Any]] = []

        class Peer(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append({"path": self.path, **body})
                status, answer = handler(self, body)
                payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                payload = json.dumps({"data": [{"id": SERVED_MODEL}]}).encode()
                self.send_response(200 if self.path == "/v1/models" else 404)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Peer)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", received

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _echo(request: http.server.BaseHTTPRequestHandler, body: dict[str, Any]) -> tuple[int, object]:
    """Answers each choice with the prompt's text; later prompts answer sooner."""
    prompt = body.get("prompt") or body["messages"][-1]["content"]
    time.sleep(0.05 * (5 - int(prompt.split()[-1])) if prompt[-1].isdigit() else 0)
    if "messages" in body:
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"{prompt}#{i}"}}
            for i in reversed(range(body["n"]))
        ]
    else:
        choices = [
            {"index": i, "text": f"{prompt}#{i}", "finish_reason": "length"}
            for i in reversed(range(body["n"]))
        ]
    usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": 4 * body["n"]}
    return 200, {"choices": choices, "usage": usage}


def test_it_sends_the_sampling_parameters_and_keeps_prompt_order(peer) -> None:  # type: ignore[no-untyped-def]
    url, received = peer(_echo)
    backend = _backend(url, concurrency=4)
    prompts: list[Any] = [f"prompt {i}" for i in range(5)]
    prompts[2] = [{"role": "user", "content": "prompt 2"}]
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=5, seed=3, stop=("\n",))
    result = backend.generate(prompts, 2, params)
    backend.close()
    assert [[s.text for s in group] for group in result] == [
        [f"prompt {i}#0", f"prompt {i}#1"] for i in range(5)
    ]
    assert [s.finish_reason for s in result[0]] == ["length", "length"]
    assert [s.finish_reason for s in result[2]] == ["stop", "stop"]
    assert {(s.prompt_tokens, s.completion_tokens) for g in result for s in g} == {(2, 4)}
    paths = sorted(r.pop("path") for r in received)
    assert paths == ["/v1/chat/completions"] + ["/v1/completions"] * 4
    for body in received:
        assert ("prompt" in body) != ("messages" in body)
        sent = {k: v for k, v in body.items() if k not in {"prompt", "messages"}}
        assert sent == {
            "model": SERVED_MODEL,
            "n": 2,
            "temperature": 0.7,
            "top_p": 0.9,
            "max_tokens": 5,
            "seed": 3,
            "stop": ["\n"],
        }


def test_it_sends_plain_prompts_to_chat_when_the_model_wants_the_template(peer) -> None:  # type: ignore[no-untyped-def]
    url, received = peer(_echo)
    backend = OpenAIBackend(
        BackendSpec(
            kind="openai",
            server_url=url,
            server_model=SERVED_MODEL,
            use_chat_template=True,
        )
    )
    result = backend.generate(["prompt 1"], 1, SamplingParams(seed=None))
    backend.close()
    assert result[0][0].text == "prompt 1#0"
    assert received[0]["path"] == "/v1/chat/completions"
    assert received[0]["messages"] == [{"role": "user", "content": "prompt 1"}]
    assert "seed" not in received[0]


def test_it_leaves_token_counts_empty_without_usage(peer) -> None:  # type: ignore[no-untyped-def]
    url, _ = peer(lambda request, body: (200, {"choices": [{"index": 0, "text": "x"}]}))
    backend = _backend(url)
    sample = backend.generate(["Hi"], 1, SamplingParams())[0][0]
    backend.close()
    assert (sample.text, sample.prompt_tokens, sample.completion_tokens) == ("x", None, None)


def test_it_retries_a_failing_server_then_says_why(peer) -> None:  # type: ignore[no-untyped-def]
    url, received = peer(lambda request, body: (500, {"error": "the GPU caught fire"}))
    backend = _backend(url, max_retries=2, backoff=0.01)
    with pytest.raises(BackendError, match="failed after 3 attempts.*HTTP 500.*caught fire"):
        backend.generate(["hi"], 2, SamplingParams())
    backend.close()
    assert len(received) == 3


def test_it_recovers_when_the_server_comes_back(peer) -> None:  # type: ignore[no-untyped-def]
    answers = iter([(503, {"error": "busy"}), (429, {"error": "slow down"})])

    def flaky(request: http.server.BaseHTTPRequestHandler, body: dict[str, Any]):  # type: ignore[no-untyped-def]
        return next(answers, None) or _echo(request, body)

    url, received = peer(flaky)
    backend = _backend(url, max_retries=3, backoff=0.01)
    result = backend.generate(["prompt 5"], 1, SamplingParams())
    backend.close()
    assert result[0][0].text == "prompt 5#0"
    assert len(received) == 3


def test_it_does_not_retry_a_refused_request(peer) -> None:  # type: ignore[no-untyped-def]
    url, received = peer(lambda request, body: (400, {"message": "max_tokens is too large"}))
    backend = _backend(url, max_retries=3, backoff=0.01)
    with pytest.raises(BackendError, match="refused the request \\(HTTP 400.*max_tokens is too"):
        backend.generate(["hi"], 1, SamplingParams())
    backend.close()
    assert len(received) == 1


def test_it_fails_fast_on_a_refused_connection() -> None:
    backend = _backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=1, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(BackendError, match="failed after 2 attempts \\(ConnectError"):
        backend.generate(["hi"], 1, SamplingParams())
    assert time.monotonic() - start < 5
    with pytest.raises(BackendError, match="did not answer within 1 s"):
        backend.wait_until_ready(timeout=1, interval=0.2)
    backend.close()


def test_it_needs_a_server_url_and_model() -> None:
    with pytest.raises(BackendError, match="server URL"):
        OpenAIBackend(BackendSpec(kind="openai", server_url="", server_model=""))
    with pytest.raises(BackendError, match="must start with http"):
        OpenAIBackend(BackendSpec(kind="openai", server_url="localhost:8000", server_model="m"))


# --- several servers behind one model -------------------------------------------------------


def _tiny_completions(tiny_model_path: Path) -> Handler:
    """``/v1/completions`` answered by the tiny model through the transformers backend: a
    real, if small, OpenAI-compatible server (two vLLM servers are too heavy for CI)."""
    from generation.backends.transformers import TransformersBackend

    model = TransformersBackend(BackendSpec(kind="transformers", source=str(tiny_model_path)))
    lock = threading.Lock()

    def handler(request: http.server.BaseHTTPRequestHandler, body: dict[str, Any]):  # type: ignore[no-untyped-def]
        params = SamplingParams(
            temperature=body["temperature"],
            top_p=body["top_p"],
            max_new_tokens=body["max_tokens"],
            seed=body.get("seed"),
        )
        with lock:  # one generate at a time: the seed applies to the process's RNG
            samples = model.generate([body["prompt"]], body["n"], params)[0]
        choices = [
            {"index": i, "text": s.text, "finish_reason": s.finish_reason}
            for i, s in enumerate(samples)
        ]
        usage = {
            "prompt_tokens": samples[0].prompt_tokens,
            "completion_tokens": sum(s.completion_tokens or 0 for s in samples),
        }
        return 200, {"choices": choices, "usage": usage}

    return handler


def _spec(urls: list[str], **options: object) -> BackendSpec:
    return BackendSpec(
        kind="openai",
        server_url=urls[0],
        extra_server_urls=tuple(urls[1:]),
        server_model=SERVED_MODEL,
        options=options,
    )


@pytest.mark.slow
def test_it_spreads_a_batch_over_two_servers_of_the_tiny_model(peer, tiny_model_path) -> None:  # type: ignore[no-untyped-def]
    handler = _tiny_completions(tiny_model_path)
    first, first_received = peer(handler)
    second, second_received = peer(handler)
    backend = OpenAIBackend(_spec([first, second], concurrency=2))
    prompts: list[Any] = [f"Tell me about the number {i}." for i in range(8)]
    params = SamplingParams(max_new_tokens=6, seed=7)
    result = backend.generate(prompts, 2, params)
    counts = [server.answered for server in backend.servers]
    backend.close()

    assert len(first_received) + len(second_received) == 8
    assert counts == [len(first_received), len(second_received)]
    assert min(counts) >= 2, counts  # both servers took a share
    # Whichever server answered, each prompt got what the model samples for its seed.
    alone = OpenAIBackend(_spec([first]))
    assert [[s.text for s in g] for g in result] == [
        [s.text for s in g] for g in alone.generate(prompts, 2, params)
    ]
    alone.close()
    assert all(len(group) == 2 and group[0].completion_tokens for group in result)


def test_it_takes_a_failing_servers_requests_to_the_other(peer) -> None:  # type: ignore[no-untyped-def]
    broken, broken_received = peer(lambda request, body: (503, {"error": "overloaded"}))
    dead = f"http://127.0.0.1:{free_port()}/v1"
    alive, alive_received = peer(_echo)
    backend = OpenAIBackend(_spec([broken, dead, alive], max_retries=0, backoff=5))
    start = time.monotonic()
    result = backend.generate([f"prompt {i}" for i in range(6)], 1, SamplingParams())
    backend.close()
    assert [g[0].text for g in result] == [f"prompt {i}#0" for i in range(6)]
    assert len(alive_received) == 6
    # Each failure sends the request on at once (no backoff), and the failed server rests.
    assert time.monotonic() - start < 3
    assert len(broken_received) < 6


def test_it_names_every_server_when_all_of_them_fail(peer) -> None:  # type: ignore[no-untyped-def]
    first, first_received = peer(lambda request, body: (500, {"error": "the GPU caught fire"}))
    dead = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend(_spec([first, dead], max_retries=1, backoff=0.01))
    with pytest.raises(BackendError) as failure:
        backend.generate(["hi"], 1, SamplingParams())
    backend.close()
    message = str(failure.value)
    assert message.startswith("all 2 servers failed after 2 attempts each")
    assert f"{first}/completions: HTTP 500" in message and "caught fire" in message
    assert f"{dead}/completions: ConnectError" in message
    assert len(first_received) == 2


def test_it_waits_for_every_server(peer) -> None:  # type: ignore[no-untyped-def]
    first, _ = peer(_echo)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend(_spec([first, dead]))
    with pytest.raises(BackendError, match=f"{dead}/models did not answer within 1 s"):
        backend.wait_until_ready(timeout=1, interval=0.2)
    backend.close()


def _with_logprobs(
    request: http.server.BaseHTTPRequestHandler, body: dict[str, Any]
) -> tuple[int, object]:
    """Answers "(A)" with the top log-probs of each token in the endpoint's own shape."""
    if "messages" in body:
        content = [
            {"token": "(", "logprob": -0.01, "top_logprobs": [{"token": "(", "logprob": -0.01}]},
            {
                "token": "A",
                "logprob": -0.2,
                "top_logprobs": [{"token": "A", "logprob": -0.2}, {"token": "B", "logprob": -1.8}],
            },
        ]
        choice = {"index": 0, "message": {"content": "(A"}, "logprobs": {"content": content}}
    else:
        tops = [{" (": -0.01}, {"A": -0.2, "B": -1.8}]
        choice = {"index": 0, "text": " (A", "logprobs": {"top_logprobs": tops}}
    return 200, {"choices": [choice]}


def test_it_asks_for_and_returns_the_top_log_probs_of_each_token(peer) -> None:  # type: ignore[no-untyped-def]
    url, received = peer(_with_logprobs)
    backend = _backend(url)
    params = SamplingParams(temperature=0, max_new_tokens=2, top_logprobs=2)
    plain, chat = backend.generate(["Which?", CONVERSATION], 1, params)
    assert plain[0].token_logprobs == ({" (": -0.01}, {"A": -0.2, "B": -1.8})
    assert chat[0].token_logprobs == ({"(": -0.01}, {"A": -0.2, "B": -1.8})
    by_path = {r["path"]: r for r in received}
    assert by_path["/v1/completions"]["logprobs"] == 2
    assert by_path["/v1/chat/completions"]["logprobs"] is True
    assert by_path["/v1/chat/completions"]["top_logprobs"] == 2
    # Not asked: none requested, none returned, even when the server sends some.
    again = backend.generate(["Which?"], 1, SamplingParams(max_new_tokens=2))
    assert again[0][0].token_logprobs is None and "logprobs" not in received[-1]
    backend.close()
