"""A generation job stores each completion exactly as the backend returned it: nothing
stripped, collapsed or normalised; only what no database column can hold (NUL, a lone
surrogate) is replaced, and the replacement is counted on the completion."""

from __future__ import annotations

import http.server
import json
import threading
import unicodedata
from collections.abc import Iterator

import pytest

from generation import services
from generation.models import Completion, PolicyModel
from tests.generation.factories import prompt_set_with_prompts

ANSWERS = [
    "  two leading spaces, a  double one and a trailing newline\n",
    unicodedata.normalize("NFD", "Café , décomposé ."),
    "a NUL \u0000 here",
    "a lone surrogate \ud83d here",
]


@pytest.fixture
def server() -> Iterator[str]:
    """A loopback OpenAI-compatible peer answering every prompt with ``ANSWERS``."""

    class Peer(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            choices = [
                {"index": i, "text": ANSWERS[i], "finish_reason": "stop"} for i in range(body["n"])
            ]
            # json.dumps escapes NUL and the surrogate, as a server's JSON would.
            payload = json.dumps({"choices": choices, "usage": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Peer)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_it_stores_generated_text_exactly(db, server: str) -> None:  # type: ignore[no-untyped-def]
    model = services.policy_model_create(
        name="peer", backend=PolicyModel.Backend.OPENAI, server_url=server, server_model="m"
    )
    job = services.generation_job_create(
        prompt_set=prompt_set_with_prompts(2), model=model, k=len(ANSWERS), max_new_tokens=8
    )
    assert services.generation_job_execute(job_id=job.pk) == "succeeded"
    for prompt_id in {c.prompt_id for c in Completion.objects.filter(job=job)}:
        rows = Completion.objects.filter(job=job, prompt_id=prompt_id).order_by("sample_index")
        assert [(c.text, c.params.get("unstorable_replaced")) for c in rows] == [
            (ANSWERS[0], None),
            (ANSWERS[1], None),
            ("a NUL \ufffd here", 1),
            ("a lone surrogate \ufffd here", 1),
        ]
