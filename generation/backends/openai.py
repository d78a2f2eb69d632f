"""Any OpenAI-compatible server (vLLM's api_server, TGI, llama.cpp, hosted APIs) over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generation.backends.base import BackendError, BackendSpec, PromptInput, Sample, SamplingParams

# Worth another try: timeouts, conflicts, rate limits and the server's own failures.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# A Retry-After longer than this is not waited out; the job fails and can be retried later.
MAX_RETRY_AFTER_S = 60.0


class OpenAIBackend:
    """``/v1/completions`` for plain prompts, ``/v1/chat/completions`` for conversations.

    Options (``spec.options``): ``timeout`` seconds per request (120), ``max_retries`` (3)
    after the first attempt, on connection errors, timeouts, 429 and 5xx, waiting
    ``backoff * 2**attempt`` seconds (``backoff`` 0.5) or the server's Retry-After;
    ``concurrency`` requests in flight, one per prompt (4); ``api_key`` (a bearer token).
    """

    def __init__(self, spec: BackendSpec) -> None:
        import httpx

        if not spec.server_url or not spec.server_model:
            raise BackendError("the openai backend needs a server URL and a model name")
        if not spec.server_url.startswith(("http://", "https://")):
            raise BackendError(
                f"server URL {spec.server_url!r} must start with http:// or https://"
            )
        self.spec = spec
        options = spec.options or {}
        self.max_retries = max(0, int(options.get("max_retries", 3)))  # type: ignore[call-overload]
        self.backoff = float(options.get("backoff", 0.5))  # type: ignore[arg-type]
        self.concurrency = max(1, int(options.get("concurrency", 4)))  # type: ignore[call-overload]
        timeout = float(options.get("timeout", 120))  # type: ignore[arg-type]
        headers = {}
        if api_key := options.get("api_key"):
            headers["Authorization"] = f"Bearer {api_key}"
        base = spec.server_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.base_url = base
        self.client = httpx.Client(
            base_url=base,
            headers=headers,
            # A dead host should fail in seconds; a slow generation may take the full timeout.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=self.concurrency),
        )

    def wait_until_ready(self, timeout: float, interval: float = 1.0) -> list[str]:
        """Poll ``/v1/models`` until the server answers 200; BackendError after ``timeout``.

        Returns the ids of the served models.
        """
        import httpx

        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                response = self.client.get("/models", timeout=min(5.0, timeout))
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        return [str(m.get("id")) for m in response.json().get("data", [])]
                    except (ValueError, AttributeError):
                        return []
                last = f"HTTP {response.status_code}"
            if time.monotonic() + interval > deadline:
                raise BackendError(
                    f"{self.base_url}/models did not answer within {timeout:.0f} s ({last})"
                )
            time.sleep(interval)

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        """``n`` samples per prompt, in prompt order; one request per prompt, several at once."""
        if n < 1:
            raise BackendError("n must be >= 1")
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            futures = [pool.submit(self._one, p, n, params) for p in prompts]
            try:
                return [f.result() for f in futures]
            except BaseException:
                # One prompt failed for good: don't send the rest to a failing server.
                for future in futures:
                    future.cancel()
                raise

    def _one(self, prompt: PromptInput, n: int, params: SamplingParams) -> list[Sample]:
        # Greedy decoding has one answer, and some servers (vLLM) refuse n > 1 for it.
        asked = 1 if params.temperature == 0 else n
        body: dict[str, Any] = {
            "model": self.spec.server_model,
            "n": asked,
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
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != asked:
            count = len(choices) if isinstance(choices, list) else 0
            raise BackendError(f"the server returned {count} choices instead of {asked}")
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        total = usage.get("completion_tokens")
        # The API gives one total for all choices; each sample gets its share (exact for n=1).
        per_choice = round(total / asked) if isinstance(total, int) else None
        samples = [
            Sample(
                text=_choice_text(choice, chat),
                prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
                completion_tokens=per_choice,
                finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            )
            for choice in choices
        ]
        return samples * (n // asked)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; the parsed JSON body of the 200 answer."""
        import httpx

        attempt = 0
        while True:
            wait = self.backoff * 2**attempt
            try:
                response = self.client.post(path, json=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        data = response.json()
                    except ValueError as exc:
                        raise BackendError(f"{self.base_url}{path} answered non-JSON") from exc
                    if not isinstance(data, dict):
                        raise BackendError(f"{self.base_url}{path} answered {type(data).__name__}")
                    return data
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{self.base_url}{path} refused the request ({problem})")
                wait = max(wait, _retry_after(response.headers.get("retry-after")))
            if attempt >= self.max_retries:
                raise BackendError(
                    f"{self.base_url}{path} failed after {attempt + 1} attempts ({problem})"
                )
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self.client.close()


def _choice_text(choice: dict[str, Any], chat: bool) -> str:
    if chat:
        message = choice.get("message") or {}
        return str(message.get("content") or "")
    return str(choice.get("text") or "")


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header in seconds form (0 when absent or a date)."""
    try:
        return min(max(float(value or 0), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0
