"""Snapshot speed: building a snapshot and exporting it, vs PostgreSQL's own COPY of the
same rows.

Fills a throwaway PostgreSQL database by COPY with the labels of N preference pairs (one
annotator's k=4 rankings: 6 pairs per prompt, with their tasks, rankings and comparisons),
then, each in a child process so its peak memory is its own: (1) Preflab builds a
snapshot of them (``snapshot_build``: selection, aggregation, splits, every export line
frozen and hashed, rows written), (2) Preflab's streaming TRL JSONL export of that
snapshot to a file, (3) ``COPY (SELECT ...) TO STDOUT`` of the same joined rows (prompt,
chosen, rejected texts and the other columns) to a file. The baseline is (3), measured in
the same run.

    .venv/bin/python bench/export.py [--quick] [--rows 1000000]

Prints the headline last: rows export_rows_s build_rows_s copy_rows_s ratio (COPY time /
export time) build_ratio (COPY time / build time) export_peak_rss_mb build_peak_rss_mb.
Targets on a quiet machine: ratio >= 0.5, build_ratio >= 0.25.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "preflab_bench_export"
WORDS = "the a model answer prompt kind helpful story once upon time banana river light".split()


def _env(admin_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": admin_url.rsplit("/", 1)[0] + f"/{DB_NAME}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "bench-only",
        "LOG_LEVEL": "WARNING",
    }


def _text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n)) + f" #{i}"


def _fill(rows: int) -> int:
    """Bulk-load the labels of ``rows`` pairs into one queue; returns the queue id."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from generation.models import GenerationJob, PromptSet
    from labeling.models import LabelingQueue

    call_command("migrate", verbosity=0)
    prompt_set = PromptSet.objects.create(name="bench")
    job = GenerationJob.objects.create(
        prompt_set=prompt_set, source="imported", status="succeeded", k=4
    )
    queue = LabelingQueue.objects.create(name="bench", mode="ranking")
    user = get_user_model().objects.create(username="ann")
    prompts = (rows + 5) // 6
    now = "2026-01-01 00:00:00+00"
    raw = connection.connection  # the psycopg connection under Django's
    with raw.cursor() as cur:
        with cur.copy(
            "COPY generation_prompt (id, prompt_set_id, position, text, content_hash, exact_hash,"
            " created_at) FROM STDIN"
        ) as copy:
            for p in range(prompts):
                copy.write_row(
                    (p + 1, prompt_set.pk, p, _text(p, 12), f"{p:064x}", f"{p:064x}", now)
                )
        with cur.copy(
            "COPY generation_completion (id, job_id, prompt_id, sample_index, text, model_name, finish_reason, params, created_at)"
            " FROM STDIN"
        ) as copy:
            for p in range(prompts):
                for k in range(4):
                    cid = p * 4 + k + 1
                    copy.write_row((cid, job.pk, p + 1, k, _text(cid, 18), "", "stop", "{}", now))
        with cur.copy(
            "COPY labeling_labelingtask (id, queue_id, prompt_id, position, is_gold, submitted_count, created_at)"
            " FROM STDIN"
        ) as copy:
            for p in range(prompts):
                copy.write_row((p + 1, queue.pk, p + 1, p, False, 1, now))
        with cur.copy(
            "COPY labeling_taskcompletion (id, task_id, completion_id, slot) FROM STDIN"
        ) as copy:
            for p in range(prompts):
                for k in range(4):
                    copy.write_row((p * 4 + k + 1, p + 1, p * 4 + k + 1, k))
        with cur.copy(
            "COPY labeling_assignment (id, task_id, annotator_id, status, claimed_at, expires_at,"
            " finished_at, counts_toward_overlap) FROM STDIN"
        ) as copy:
            for p in range(prompts):
                copy.write_row((p + 1, p + 1, user.pk, "submitted", now, now, now, True))
        with cur.copy(
            'COPY labeling_ranking (id, assignment_id, task_id, annotator_id, "order", scores,'
            " both_bad, time_spent_ms, comment, flags, created_at, updated_at, version, verdict)"
            " FROM STDIN"
        ) as copy:
            for p in range(prompts):
                order = "[" + ", ".join(f"[{p * 4 + k + 1}]" for k in range(4)) + "]"
                copy.write_row(
                    (p + 1, p + 1, p + 1, user.pk, order, "{}", False, 0, "", "[]", now, now, 1, "")
                )
        with cur.copy(
            "COPY labeling_comparison (id, ranking_id, queue_id, prompt_id, chosen_id, rejected_id,"
            " is_tie, margin, rank_gap, both_bad, annotator_id, created_at) FROM STDIN"
        ) as copy:
            written = 0
            for p in range(prompts):
                for a in range(4):
                    for b in range(a + 1, 4):
                        if written == rows:
                            break
                        written += 1
                        copy.write_row(
                            (
                                written,
                                p + 1,
                                queue.pk,
                                p + 1,
                                p * 4 + a + 1,
                                p * 4 + b + 1,
                                False,
                                float(b - a),
                                float(b - a),
                                False,
                                user.pk,
                                now,
                            )
                        )
        for table in (
            "generation_prompt",
            "generation_completion",
            "labeling_labelingtask",
            "labeling_taskcompletion",
            "labeling_assignment",
            "labeling_ranking",
            "labeling_comparison",
        ):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        cur.execute("ANALYZE")
    raw.commit()
    return queue.pk


def _child_build(queue_id: int, out: str) -> None:
    import django

    django.setup()
    from labeling import snapshots

    start = time.perf_counter()
    snapshot = snapshots.snapshot_build(
        name="bench", spec=snapshots.SnapshotFilter(queues=[queue_id]), eval_fraction=0.1
    )
    elapsed = time.perf_counter() - start
    Path(out).write_text(str(snapshot.pk))
    print(f"seconds={elapsed}")


def _child_export(snapshot_id: int, out: str) -> None:
    import django

    django.setup()
    from labeling import snapshots
    from labeling.models import DatasetSnapshot

    snapshot = DatasetSnapshot.objects.get(pk=snapshot_id)
    start = time.perf_counter()
    with open(out, "wb") as handle:
        for chunk in snapshots.snapshot_export_trl_jsonl(snapshot):
            handle.write(chunk)
    print(f"seconds={time.perf_counter() - start}")


COPY_SQL = """COPY (
  SELECT p.text, c.text, r.text, s.margin, s.rank_gap, s.score_diff, s.score_chosen,
         s.score_rejected, s.both_bad, s.votes, s.agreement, s.annotator, q.name
  FROM labeling_snapshotrow s
  JOIN generation_prompt p ON p.id = s.prompt_id
  JOIN generation_completion c ON c.id = s.chosen_id
  JOIN generation_completion r ON r.id = s.rejected_id
  JOIN labeling_labelingqueue q ON q.id = s.queue_id
  WHERE s.snapshot_id = {sid} AND NOT s.is_tie ORDER BY s.id
) TO STDOUT"""


def _child_copy(snapshot_id: int, out: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        with open(out, "wb") as handle, cur.copy(COPY_SQL.format(sid=int(snapshot_id))) as copy:
            for block in copy:
                handle.write(block)
        print(f"seconds={time.perf_counter() - start}")


def _timed_child(mode: str, snapshot_id: int, out: str, env: dict[str, str]) -> tuple[float, float]:
    """Seconds of the work itself (process start-up and Django set-up excluded: from the
    first query to the last byte written) and peak RSS (MB) of one child process (the
    largest child so far: the build runs first, then the export)."""
    result = subprocess.run(
        [sys.executable, __file__, f"--child-{mode}", str(snapshot_id), out],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = float(result.stdout.strip().rsplit("seconds=", 1)[1])
    # ru_maxrss of children is the largest child so far; the export runs first.
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--child-build", nargs=2, metavar=("QUEUE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--child-export", nargs=2, metavar=("SNAPSHOT", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--child-copy", nargs=2, metavar=("SNAPSHOT", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child_build:
        _child_build(int(args.child_build[0]), args.child_build[1])
        return
    if args.child_export:
        _child_export(int(args.child_export[0]), args.child_export[1])
        return
    if args.child_copy:
        _child_copy(int(args.child_copy[0]), args.child_copy[1])
        return
    if args.quick:
        args.rows = 100_000

    import psycopg

    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    env = _env(args.admin_url)
    os.environ.update(
        {k: env[k] for k in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "LOG_LEVEL")}
    )
    start = time.perf_counter()
    queue_id = _fill(args.rows)
    print(
        f"loaded the labels of {args.rows} pairs in {time.perf_counter() - start:.1f} s", flush=True
    )

    with tempfile.TemporaryDirectory() as tmp:
        build_s, build_rss = _timed_child("build", queue_id, f"{tmp}/snapshot-id", env)
        snapshot_id = int(Path(f"{tmp}/snapshot-id").read_text())
        export_s, export_rss = _timed_child("export", snapshot_id, f"{tmp}/export.jsonl", env)
        export_lines = sum(1 for _ in open(f"{tmp}/export.jsonl", "rb"))
        copy_s, _ = _timed_child("copy", snapshot_id, f"{tmp}/copy.tsv", env)
        copy_lines = sum(1 for _ in open(f"{tmp}/copy.tsv", "rb"))
        export_mb = os.path.getsize(f"{tmp}/export.jsonl") / 2**20
        copy_mb = os.path.getsize(f"{tmp}/copy.tsv") / 2**20
    if export_lines != args.rows or copy_lines != args.rows:
        raise SystemExit(
            f"row counts differ: export {export_lines}, copy {copy_lines}, expected {args.rows}"
        )
    print(
        f"build: {build_s:.2f} s; export: {export_s:.2f} s, {export_mb:.0f} MB JSONL; "
        f"copy: {copy_s:.2f} s, {copy_mb:.0f} MB TSV; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"rows={args.rows} export_rows_s={args.rows / export_s:.0f} "
        f"build_rows_s={args.rows / build_s:.0f} copy_rows_s={args.rows / copy_s:.0f} "
        f"ratio={copy_s / export_s:.2f} build_ratio={copy_s / build_s:.2f} "
        f"export_peak_rss_mb={export_rss:.0f} build_peak_rss_mb={build_rss:.0f}"
    )


if __name__ == "__main__":
    main()
