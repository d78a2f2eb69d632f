"""Any OpenAI-compatible server (``vllm serve``, TGI, llama.cpp, hosted APIs) over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generation.backends.base import BackendError, BackendSpec, PromptInput, Sample, SamplingParams

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """``/v1/completions`` for plain prompts, ``/v1/chat/completions`` for conversations.

    Options (``spec.options``): ``timeout`` seconds per request (120), ``max_retries`` (3,
    exponential backoff from ``backoff`` seconds, 0.5), ``concurrency`` requests in flight
    (4), ``api_key`` (sent as a bearer token).
    """

    def __init__(self, spec: BackendSpec) -> None:
        import httpx

        if not spec.server_url or not spec.server_model:
            raise BackendError("the openai backend needs a server URL and a model name")
        self.spec = spec
        options = spec.options or {}
        self.max_retries = int(options.get("max_retries", 3))  # type: ignore[call-overload]
        self.backoff = float(options.get("backoff", 0.5))  # type: ignore[arg-type]
        self.concurrency = max(1, int(options.get("concurrency", 4)))  # type: ignore[call-overload]
        headers = {}
        if api_key := options.get("api_key"):
            headers["Authorization"] = f"Bearer {api_key}"
        base = spec.server_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.client = httpx.Client(
            base_url=base,
            headers=headers,
            timeout=float(options.get("timeout", 120)),  # type: ignore[arg-type]
            limits=httpx.Limits(max_connections=self.concurrency),
        )

    def wait_until_ready(self, timeout: float) -> None:
        """Poll ``/v1/models`` until the server answers; BackendError after ``timeout``."""
        import httpx

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                if self.client.get("/models", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(1)
        raise BackendError(f"{self.spec.server_url} did not answer within {timeout:.0f} s {last}")

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._one(p, n, params), prompts))

    def _one(self, prompt: PromptInput, n: int, params: SamplingParams) -> list[Sample]:
        body: dict[str, Any] = {
            "model": self.spec.server_model,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        chat = isinstance(prompt, list) or self.spec.use_chat_template
        if chat:
            body["messages"] = (
                prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            )
            data = self._post("/chat/completions", body)
        else:
            body["prompt"] = prompt
            data = self._post("/completions", body)
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise BackendError(f"the server returned {len(choices)} choices instead of {n}")
        usage = data.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        total_completion = usage.get("completion_tokens")
        per_choice = round(total_completion / n) if isinstance(total_completion, int) else None
        return [
            Sample(
                text=(c["message"]["content"] or "") if chat else c.get("text", ""),
                prompt_tokens=prompt_tokens,
                completion_tokens=per_choice,
                finish_reason="length" if c.get("finish_reason") == "length" else "stop",
            )
            for c in choices
        ]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        attempt = 0
        while True:
            try:
                response = self.client.post(path, json=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return dict(response.json())
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(
                        f"{self.spec.server_url}{path} refused the request ({problem})"
                    )
            if attempt >= self.max_retries:
                raise BackendError(
                    f"{self.spec.server_url}{path} failed after {attempt + 1} attempts ({problem})"
                )
            time.sleep(self.backoff * 2**attempt)
            attempt += 1

    def close(self) -> None:
        self.client.close()
