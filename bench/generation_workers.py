"""One generation job run by 1 and by 2 worker processes: tokens/s, and that nothing is lost.

The generation half of ``bench/distributed.py`` (which imports ``generation_throughput``).
A throwaway SQLite database under a temp var dir, the tiny offline model, one prompt set;
the same job (same prompts, k, seed, batches) is created twice and run by N processes that
each call the worker's service (``generation_job_execute``) as a Celery worker would, taking
the job's shards. Each run must end with exactly k completions per prompt, none twice, and
both runs with the same texts (whole-batch shards, seeds by prompt position).

    .venv/bin/python bench/generation_workers.py [--quick]

Prints last: gen_single_tok_s=… gen_multi_tok_s=… gen_same_texts=…
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(var_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "1",
        "PREFLAB_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'bench.sqlite3'}",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT),
    }


def _django(var_dir: Path) -> None:
    os.environ.update(_env(var_dir))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _worker(var_dir: Path, job_id: int) -> None:
    _django(var_dir)
    from generation import services

    services.generation_job_execute(job_id=job_id)


def _run(var_dir: Path, job_id: int, workers: int) -> float:
    """Wall-clock seconds for ``workers`` processes to finish the job."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(var_dir), str(job_id)],
            env=_env(var_dir),
            cwd=ROOT,
        )
        for _ in range(workers)
    ]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a worker exited with {process.returncode}")
    return time.perf_counter() - start


def generation_throughput(quick: bool) -> tuple[float, float, bool]:
    """(tokens/s with 1 worker, tokens/s with 2 workers, whether both runs wrote the same
    texts). Raises SystemExit when a run lost or repeated a completion."""
    with tempfile.TemporaryDirectory(prefix="preflab-bench-gen-") as tmp:
        var_dir = Path(tmp)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            env=_env(var_dir),
            cwd=ROOT,
            check=True,
        )
        _django(var_dir)
        from django.db.models import Count

        from generation import services
        from generation.models import Completion, GenerationJob
        from generation.tiny_model import build_tiny_model

        model_dir = build_tiny_model(var_dir / "data" / "tiny")
        model = services.policy_model_create(
            name="tiny", backend="transformers", source=str(model_dir)
        )
        prompt_set = services.prompt_set_create(name="bench")
        count = 16 if quick else 64
        lines = "\n".join(f'{{"prompt": "Prompt {i}: once upon a time"}}' for i in range(count))
        services.prompt_set_import(prompt_set=prompt_set, data=lines.encode(), format="jsonl")
        rates: list[float] = []
        texts: list[list[tuple[int, int, str]]] = []
        for workers in (1, 2):
            job = services.generation_job_create(
                prompt_set=prompt_set,
                model=model,
                k=2,
                max_new_tokens=16 if quick else 48,
                batch_size=2,
                batches_per_shard=2,
            )
            seconds = _run(var_dir, job.pk, workers)
            job = GenerationJob.objects.get(pk=job.pk)
            rows = Completion.objects.filter(job=job)
            per_prompt = {r["n"] for r in rows.values("prompt").annotate(n=Count("id"))}
            distinct = rows.values("prompt", "sample_index").distinct().count()
            if job.status != "succeeded" or per_prompt != {2} or distinct != rows.count():
                raise SystemExit(f"{workers} worker(s): {job.status} {job.error} {per_prompt}")
            rates.append(job.tokens_generated / seconds)
            texts.append(sorted(rows.values_list("prompt__position", "sample_index", "text")))
        return rates[0], rates[1], texts[0] == texts[1]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    single, multi, same = generation_throughput(args.quick)
    print(f"gen_single_tok_s={single:.1f} gen_multi_tok_s={multi:.1f} gen_same_texts={same}")


if __name__ == "__main__":
    main()
