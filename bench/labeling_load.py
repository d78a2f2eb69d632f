"""Load test of the labeling API: N concurrent annotators doing next-task + submit.

Serves the app with gunicorn on PostgreSQL (a throwaway database), drives it from this
process with one HTTP client per simulated annotator, then checks the store: no task over
its overlap, no annotator twice on a task. The baseline, measured in the same run under the
same concurrency and think time, is GET /api/labeling/queues/ (token auth and one query: the
cost of the stack itself). Each simulated annotator reads for --think-ms between requests
(people take seconds per task; 0 turns this into a closed-loop stress test).

    .venv/bin/python bench/labeling_load.py [--quick] [--annotators 50] [--seconds 30] [--think-ms 1000]

Prints the headline last: p50_ms p95_ms p99_ms rps errors over_assigned baseline_p99_ms.
Target on 2 cores: p99 < 100 ms, zero errors, zero over-assigned tasks.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _setup(annotators: int, tasks: int, overlap: int) -> tuple[int, list[str]]:
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from generation.models import Completion, GenerationJob, PromptSet
    from labeling import services
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    prompt_set = PromptSet.objects.create(name="bench")
    from generation.models import Prompt

    prompts = Prompt.objects.bulk_create(
        [
            Prompt(
                prompt_set=prompt_set,
                position=i,
                text=f"Prompt {i}",
                content_hash=f"h{i}",
                exact_hash=f"e{i}",
            )
            for i in range(tasks)
        ]
    )
    job = GenerationJob.objects.create(
        prompt_set=prompt_set,
        status="succeeded",
        source="imported",
        k=2,
        prompts_total=tasks,
        prompts_done=tasks,
    )
    Completion.objects.bulk_create(
        [
            Completion(job=job, prompt=p, sample_index=i, text=f"answer {i}")
            for p in prompts
            for i in range(2)
        ]
    )
    queue = services.labeling_queue_create(
        jobs=[job], settings=services.QueueSettings(name="bench", mode="pairwise", overlap=overlap)
    )
    tokens = []
    for i in range(annotators):
        user = UserFactory(username=f"annotator{i}", roles=["annotator"])
        tokens.append(Token.objects.create(user=user).key)
    from django.db import connection

    with connection.cursor() as cursor:
        # A live database has statistics; a freshly bulk-loaded one must be told.
        cursor.execute("ANALYZE")
    return queue.pk, tokens


def _check_store(queue_id: int, overlap: int) -> tuple[int, int]:
    from labeling.models import Assignment

    submitted = Assignment.objects.filter(task__queue_id=queue_id, status="submitted")
    per_task = Counter(submitted.values_list("task_id", flat=True))
    over = sum(1 for n in per_task.values() if n > overlap)
    return over, sum(per_task.values())


class _Client:
    """A keep-alive HTTP/1.1 client on http.client: far lighter per request than httpx, so
    that on a 2-core machine the load generator steals less CPU from the server it measures."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = headers

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {raw[:200]!r}")
        return response.status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        self.conn.close()


def _drive(
    port: int, headers_list: list[dict[str, str]], seconds: float, work: Any
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(len(headers_list))

    def run(headers: dict[str, str]) -> None:
        nonlocal errors
        mine: list[float] = []
        failed = 0
        client = _Client(port, headers)
        client.request("GET", "/api/labeling/queues/")  # warm the connection, unmeasured
        barrier.wait()
        while time.monotonic() < deadline:
            try:
                if not work(client, mine):
                    break
            except Exception:  # noqa: BLE001 - counted, the load goes on
                failed += 1
                client.close()
                client = _Client(port, headers)
        client.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=run, args=(h,)) for h in headers_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 s of load (5 s of baseline)")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--think-ms", type=float, default=1000.0, help="pause between requests")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds = 10.0

    name = "preflab_bench"
    _recreate_database(args.admin_url, name)
    db_url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "bench-only",
        "PASSWORD_HASHERS": "django.contrib.auth.hashers.MD5PasswordHasher",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DATABASE_URL",
                "DJANGO_SETTINGS_MODULE",
                "SECRET_KEY",
                "PASSWORD_HASHERS",
                "ALLOWED_HOSTS",
                "LOG_LEVEL",
            )
        }
    )
    tasks = max(200, int(args.annotators * args.seconds * 4))
    queue_id, tokens = _setup(args.annotators, tasks, args.overlap)

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = [{"Authorization": f"Token {t}"} for t in tokens]

        rng = random.Random(0)

        def think() -> None:
            # Jittered (0.5x to 1.5x) so that annotators do not click in lockstep.
            time.sleep(args.think_ms / 1000 * rng.uniform(0.5, 1.5))

        def health(client, out) -> bool:  # type: ignore[no-untyped-def]
            think()
            start = time.perf_counter()
            client.request("GET", "/api/labeling/queues/")
            out.append((time.perf_counter() - start) * 1000)
            return True

        baseline, baseline_errors = _drive(port, headers, args.seconds / 2, health)

        def annotate(client, out) -> bool:  # type: ignore[no-untyped-def]
            think()
            start = time.perf_counter()
            code, task = client.request("POST", f"/api/labeling/queues/{queue_id}/next/")
            out.append((time.perf_counter() - start) * 1000)
            if code == 204:
                return False
            ids = [c["id"] for c in task["completions"]]
            think()
            start = time.perf_counter()
            client.request(
                "POST",
                f"/api/labeling/queues/{queue_id}/submit/",
                {"assignment": task["assignment"], "order": [[ids[0]], [ids[1]]]},
            )
            out.append((time.perf_counter() - start) * 1000)
            return True

        started = time.perf_counter()
        latencies, errors = _drive(port, headers, args.seconds, annotate)
        elapsed = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    over_assigned, labels = _check_store(queue_id, args.overlap)
    print(
        f"annotators={args.annotators} seconds={args.seconds:g} think_ms={args.think_ms:g} "
        f"gunicorn_workers={args.workers} "
        f"labels={labels} requests={len(latencies)} baseline_requests={len(baseline)} "
        f"baseline_errors={baseline_errors} median_ms={statistics.median(latencies):.1f}"
    )
    print(
        f"p50_ms={_percentile(latencies, 50):.1f} p95_ms={_percentile(latencies, 95):.1f} "
        f"p99_ms={_percentile(latencies, 99):.1f} rps={len(latencies) / elapsed:.0f} errors={errors} "
        f"over_assigned={over_assigned} baseline_p99_ms={_percentile(baseline, 99):.1f}"
    )


if __name__ == "__main__":
    main()
