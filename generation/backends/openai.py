"""Any OpenAI-compatible server (vLLM's api_server, TGI, llama.cpp, hosted APIs) over HTTP."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generation.backends.base import BackendError, BackendSpec, PromptInput, Sample, SamplingParams

# Worth another try: timeouts, conflicts, rate limits and the server's own failures.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# A Retry-After longer than this is not waited out; the job fails and can be retried later.
MAX_RETRY_AFTER_S = 60.0
# The longest a failing server is passed over while another can take its requests.
MAX_REST_S = 30.0


class _Server:
    """One server of the model: its HTTP client and how busy and healthy it looks."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float, connections: int) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise BackendError(f"server URL {url!r} must start with http:// or https://")
        base = url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.base_url = base
        self.client = httpx.Client(
            base_url=base,
            headers=headers,
            # A dead host should fail in seconds; a slow generation may take the full timeout.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=connections),
        )
        self.in_flight = 0
        self.failures = 0  # in a row; an answer resets it
        self.resting_until = 0.0  # monotonic time before which others go first
        self.answered = 0  # requests answered with 200


class OpenAIBackend:
    """``/v1/completions`` for plain prompts, ``/v1/chat/completions`` for conversations.

    A model may name several servers (``spec.server_urls``, e.g. several ``vllm serve``
    instances): each request goes to the least-loaded one (fewest requests in flight; ties
    go round the list), and a request that fails on one server is tried on the next at once.
    A server that failed rests (``backoff * 2**failures`` seconds in a row, at most
    ``MAX_REST_S``) while others are there to take its requests, then gets them again.

    Options (``spec.options``): ``timeout`` seconds per request (120), ``max_retries`` (3)
    rounds after the first over the servers, on connection errors, timeouts, 429 and 5xx,
    waiting ``backoff * 2**round`` seconds (``backoff`` 0.5) or the server's Retry-After
    between rounds; ``concurrency`` requests in flight per server, one per prompt (4);
    ``api_key`` (a bearer token, the same for every server).
    """

    def __init__(self, spec: BackendSpec) -> None:
        if not spec.server_urls or not spec.server_model:
            raise BackendError("the openai backend needs a server URL and a model name")
        self.spec = spec
        options = spec.options or {}
        self.max_retries = max(0, int(options.get("max_retries", 3)))  # type: ignore[call-overload]
        self.backoff = float(options.get("backoff", 0.5))  # type: ignore[arg-type]
        self.concurrency = max(1, int(options.get("concurrency", 4)))  # type: ignore[call-overload]
        timeout = float(options.get("timeout", 120))  # type: ignore[arg-type]
        headers = {}
        if api_key := options.get("api_key"):
            headers["Authorization"] = f"Bearer {api_key}"
        self.servers = [
            _Server(url, headers, timeout, self.concurrency) for url in spec.server_urls
        ]
        self._lock = threading.Lock()
        self._turn = 0

    @property
    def base_url(self) -> str:
        return self.servers[0].base_url

    @property
    def client(self) -> Any:
        return self.servers[0].client

    def wait_until_ready(self, timeout: float, interval: float = 1.0) -> list[str]:
        """Poll ``/v1/models`` on every server until each answers 200; BackendError naming
        the first that did not answer within ``timeout``.

        Returns the ids of the models the first server serves.
        """
        import httpx

        deadline = time.monotonic() + timeout
        served: list[str] | None = None
        for server in self.servers:
            last = "no answer"
            while True:
                try:
                    response = server.client.get("/models", timeout=min(5.0, timeout))
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        try:
                            ids = [str(m.get("id")) for m in response.json().get("data", [])]
                        except (ValueError, AttributeError):
                            ids = []
                        served = ids if served is None else served
                        break
                    last = f"HTTP {response.status_code}"
                if time.monotonic() + interval > deadline:
                    raise BackendError(
                        f"{server.base_url}/models did not answer within {timeout:.0f} s ({last})"
                    )
                time.sleep(interval)
        return served or []

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        """``n`` samples per prompt, in prompt order; one request per prompt, several at once,
        spread over the servers."""
        if n < 1:
            raise BackendError("n must be >= 1")
        if not prompts:
            return []
        workers = min(self.concurrency * len(self.servers), len(prompts))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._one, p, n, params) for p in prompts]
            try:
                return [f.result() for f in futures]
            except BaseException:
                # One prompt failed for good: don't send the rest to failing servers.
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
            if params.top_logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = params.top_logprobs
            data = self._post("/chat/completions", body)
        else:
            body["prompt"] = prompt
            if params.top_logprobs:
                body["logprobs"] = params.top_logprobs
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
                token_logprobs=_choice_logprobs(choice, chat) if params.top_logprobs else None,
            )
            for choice in choices
        ]
        return samples * (n // asked)

    def _pick(self, tried: set[int]) -> int:
        """The server for the next attempt: untried by this request this round, not resting,
        fewest requests in flight, then round the list. Counts it as busy."""
        with self._lock:
            now = time.monotonic()
            count = len(self.servers)
            order = [(self._turn + i) % count for i in range(count)]
            self._turn = (self._turn + 1) % count
            index = min(
                (i for i in order if i not in tried),
                key=lambda i: (self.servers[i].resting_until > now, self.servers[i].in_flight),
            )
            self.servers[index].in_flight += 1
            return index

    def _done(self, index: int, *, failed: bool, answered: bool = False) -> None:
        with self._lock:
            server = self.servers[index]
            server.in_flight -= 1
            server.answered += answered
            if failed:
                server.failures += 1
                rest = min(self.backoff * 2**server.failures, MAX_REST_S)
                server.resting_until = time.monotonic() + rest
            else:
                server.failures = 0
                server.resting_until = 0.0

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to one server after another, in rounds with backoff; the parsed JSON body of
        the first 200 answer. A refused request (4xx) is refused everywhere: no retry."""
        import httpx

        problems: dict[int, str] = {}
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * 2**attempt
            tried: set[int] = set()
            while len(tried) < len(self.servers):
                index = self._pick(tried)
                tried.add(index)
                server = self.servers[index]
                try:
                    response = server.client.post(path, json=body)
                except httpx.HTTPError as exc:
                    self._done(index, failed=True)
                    problems[index] = f"{type(exc).__name__}: {exc}"
                    continue
                ok = response.status_code == 200
                # A refused request (4xx) says nothing about the server's health.
                self._done(index, failed=response.status_code in RETRY_STATUS, answered=ok)
                if ok:
                    try:
                        data = response.json()
                    except ValueError as exc:
                        raise BackendError(f"{server.base_url}{path} answered non-JSON") from exc
                    if not isinstance(data, dict):
                        raise BackendError(
                            f"{server.base_url}{path} answered {type(data).__name__}"
                        )
                    return data
                problems[index] = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(
                        f"{server.base_url}{path} refused the request ({problems[index]})"
                    )
                wait = max(wait, _retry_after(response.headers.get("retry-after")))
            if attempt < self.max_retries:
                time.sleep(wait)
        attempts = self.max_retries + 1
        if len(self.servers) == 1:
            server = self.servers[0]
            raise BackendError(
                f"{server.base_url}{path} failed after {attempts} attempts ({problems[0]})"
            )
        reasons = "; ".join(
            f"{self.servers[i].base_url}{path}: {problems[i]}" for i in sorted(problems)
        )
        raise BackendError(
            f"all {len(self.servers)} servers failed after {attempts} attempts each ({reasons})"
        )

    def close(self) -> None:
        for server in self.servers:
            server.client.close()


def _choice_text(choice: dict[str, Any], chat: bool) -> str:
    if chat:
        message = choice.get("message") or {}
        return str(message.get("content") or "")
    return str(choice.get("text") or "")


def _choice_logprobs(choice: dict[str, Any], chat: bool) -> tuple[dict[str, float], ...] | None:
    """Each reply token's top alternatives (token -> log-prob), None when the server sent
    none: ``logprobs.content[].top_logprobs[]`` from chat, ``logprobs.top_logprobs[]`` from
    completions (the OpenAI API's two shapes, which vLLM serves too)."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    positions: list[dict[str, float]] = []
    try:
        if chat:
            for entry in logprobs.get("content") or []:
                positions.append(
                    {str(t["token"]): float(t["logprob"]) for t in entry.get("top_logprobs") or []}
                )
        else:
            for entry in logprobs.get("top_logprobs") or []:
                positions.append({str(t): float(v) for t, v in (entry or {}).items()})
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # a malformed answer: no log-probs rather than a failed request
    return tuple(positions) if positions else None


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header in seconds form (0 when absent or a date)."""
    try:
        return min(max(float(value or 0), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0
