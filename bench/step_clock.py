"""Each optimizer step's wall-clock time and full-precision loss, written by rank 0 to a file.

``bench/distributed.py`` times and compares its runs with this rather than with what the
reporter sees: the Trainer's ``train_runtime`` reaches the reporter as a log line rounded to
0.1 s and counts the set-up before the first step. The clock wraps the callback that every
grouped runner builds (``training.core.hf.ReporterCallback.make``), so the run trains as it
would anyway; on a multi-process run, its ranks install it at start-up through
``sitecustomize`` (:func:`site_dir`; ``run_launched`` puts the caller's ``PYTHONPATH`` after
the code root on theirs).

One JSON object a line: ``{"step": s, "t": <time.perf_counter()>}`` at the end of step ``s``
(after the step's gradients were all-reduced, so rank 0's clock keeps the group's pace; no
collective is added), and ``{"step": s, "loss": <float>}`` when step ``s`` is logged (the
Trainer's mean over all ranks, as a Python float).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ENV = "PREFLAB_BENCH_STEPS"
"""The file the clock appends to; unset, nothing is written."""

_SITECUSTOMIZE = f"""
import os

if os.environ.get({ENV!r}):
    from bench.step_clock import install

    install()
"""


def install() -> None:
    """Wrap ``ReporterCallback.make`` in this process (once) so its callbacks also write the
    steps to the file named by ``$PREFLAB_BENCH_STEPS``, read when each run starts."""
    from training.core import hf

    if getattr(hf.ReporterCallback.make, "step_clock", False):
        return
    make = hf.ReporterCallback.make

    def make_with_clock(self: Any) -> Any:
        return _with_clock(make(self), os.environ.get(ENV, ""))

    make_with_clock.step_clock = True  # type: ignore[attr-defined]
    hf.ReporterCallback.make = make_with_clock  # type: ignore[method-assign]


def _with_clock(callback: Any, path: str) -> Any:
    if not path:
        return callback
    on_step_end, on_log = callback.on_step_end, callback.on_log

    def write(state: Any, event: dict[str, Any]) -> None:
        if state.is_world_process_zero:
            with open(path, "a") as out:
                out.write(json.dumps(event) + "\n")

    def timed_step_end(args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        write(state, {"step": int(state.global_step), "t": time.perf_counter()})
        return on_step_end(args, state, control, **kwargs)

    def logged(args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if logs and "loss" in logs:
            write(state, {"step": int(state.global_step), "loss": float(logs["loss"])})
        return on_log(args, state, control, logs=logs, **kwargs)

    callback.on_step_end, callback.on_log = timed_step_end, logged
    return callback


def site_dir(folder: Path) -> Path:
    """A folder holding the ``sitecustomize.py`` that installs the clock; put it on the
    ranks' ``PYTHONPATH``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return folder


def read_steps(path: Path) -> tuple[dict[int, float], dict[int, float]]:
    """The file's (step -> end time, step -> loss)."""
    times: dict[int, float] = {}
    losses: dict[int, float] = {}
    for line in Path(path).read_text().splitlines():
        event = json.loads(line)
        if "t" in event:
            times[int(event["step"])] = float(event["t"])
        if "loss" in event:
            losses[int(event["step"])] = float(event["loss"])
    return times, losses


def steps_per_s(times: dict[int, float]) -> float:
    """Steps per second: 1 / the median time between the ends of consecutive steps.

    The first step (allocations, DDP's first bucket set-up) has no predecessor and is left
    out; the median keeps a moment when another process takes the cores from moving it.
    """
    steps = sorted(times)
    gaps = [(times[b] - times[a]) / (b - a) for a, b in zip(steps, steps[1:], strict=False)]
    if not gaps:
        raise RuntimeError("at least two steps are needed to time a rate")
    return 1.0 / statistics.median(gaps)
