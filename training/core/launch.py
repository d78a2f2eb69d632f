"""Multi-process training runs: one run as a ``torchrun`` process group.

A run whose config asks for ``num_processes > 1`` is not trained in the worker's own
process. :func:`run_launched` writes the run's spec and data to a launch folder, starts
``torchrun`` (PyTorch's standard launcher) as a subprocess, and waits for it, while it:

- forwards rank 0's progress and log lines to the caller's reporter: rank 0 appends them
  to ``events.jsonl`` and this process tails the file;
- passes a stop request on: when ``reporter.should_stop()`` turns true it creates the file
  ``stop``; rank 0 sees it between steps, every rank learns it from one all-reduce
  (:class:`RankReporter`), so all ranks stop after the same step and the Trainer saves the
  checkpoint of that step;
- fails the run when a rank dies: each rank that raises writes ``error-<rank>.json`` (its
  message and traceback) before exiting; torchrun then stops the others and exits non-zero,
  and :func:`run_launched` raises :class:`RankFailed` with the first failing rank's message,
  its traceback already in the log.

Each rank runs ``python -m training.core.launch rank <launch folder>``: the same
:func:`~training.core.runners.run_training` as a one-process run, with a
:class:`RankReporter`. The Trainer (through accelerate) reads torchrun's environment and
trains under DDP, on gloo on a CPU and NCCL on GPUs, or under FSDP or DeepSpeed when the
config says so (:func:`parallelism_arguments`). PPO and GRPO, this project's own loop, join
the group themselves (:mod:`training.core.rl.distributed`). The caller's own heartbeat
keeps beating while the group runs: this module only polls files.

Layout of ``output_dir/launch``::

    job.pkl          (RunSpec, RunData) the ranks train on
    events.jsonl     rank 0's reports and log lines, one JSON object a line
    stop             exists once a stop was requested
    result.json      rank 0's RunResult, when the group finished or stopped
    error-<r>.json   the exception of rank r, if it raised
    torchrun.log     the launcher's and the ranks' stdout and stderr

Nothing here imports Django; torch is imported by the ranks, not by the caller.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.core.configs import CommonConfig
from training.core.data import RunData
from training.core.reporting import ProgressReporter
from training.core.runners import RunResult, RunSpec, TrainingError

__all__ = [
    "LAUNCH",
    "LaunchOptions",
    "RankFailed",
    "RankReporter",
    "launcher_command",
    "parallelism_arguments",
    "run_launched",
]

LAUNCH = "launch"
_JOB, _EVENTS, _STOP, _RESULT, _LOG = (
    "job.pkl",
    "events.jsonl",
    "stop",
    "result.json",
    "torchrun.log",
)
_ERROR_PREFIX = "error-"
# The folder that holds the ``training`` package: the ranks import the caller's code from it.
CODE_ROOT = Path(__file__).resolve().parents[2]
_LOG_TAIL_LINES = 40


class RankFailed(TrainingError):
    """A rank of a multi-process run raised or died; the message names the rank and its error.

    A :class:`TrainingError` so the run fails with this message and no traceback of the
    launching process (which says only that a subprocess failed): the rank's own traceback
    was written to the run's log before this is raised.
    """


@dataclass(frozen=True)
class LaunchOptions:
    """How to start the process group; the defaults launch on this machine alone."""

    num_nodes: int = 1
    """Machines taking part; each runs ``num_processes`` ranks. Above 1, the other machines
    start the same command (:func:`launcher_command` with their ``node_rank``) by hand or
    by their own scheduler, with ``output_dir`` on a filesystem they share."""
    rdzv_endpoint: str = ""
    """``host:port`` every node reaches for the rendezvous (torchrun's c10d backend), needed
    when ``num_nodes > 1``; empty on one node (torchrun ``--standalone``)."""
    run_id: str = "preflab"
    """The rendezvous id: the same on every node of one run, unique among concurrent runs."""
    poll_s: float = 0.5
    """How often the caller reads rank 0's events and checks for a stop request."""
    terminate_grace_s: float = 30.0
    """After a stop of the whole group (the caller itself raised), how long to wait before
    killing it."""


# --- the parallelism presets -------------------------------------------------------------

_DEEPSPEED_STAGES = {"deepspeed_zero2": 2, "deepspeed_zero3": 3}


def parallelism_arguments(config: CommonConfig) -> dict[str, Any]:
    """The ``TrainingArguments`` fields that make the Trainer shard as ``config`` asks.

    "ddp": none (the Trainer wraps the model in DDP whenever torchrun started it).
    "fsdp": ``fsdp="full_shard auto_wrap"`` with transformers' default wrap policy (each
    decoder layer), or ``parallelism_config``'s ``fsdp_config``. "deepspeed_zero2" and
    "deepspeed_zero3": a DeepSpeed config with that ZeRO stage whose batch sizes, clipping
    and precision are "auto" (filled from the Trainer's own arguments), or the file
    ``parallelism_config`` names. The file is read here, by every rank.
    """
    strategy = getattr(config, "parallelism", "ddp")
    path = getattr(config, "parallelism_config", "")
    custom = _read_json(path) if path else None
    if strategy == "ddp":
        return {}
    if strategy == "fsdp":
        return {"fsdp": "full_shard auto_wrap", "fsdp_config": custom or {}}
    if strategy in _DEEPSPEED_STAGES:
        return {"deepspeed": custom or deepspeed_preset(_DEEPSPEED_STAGES[strategy])}
    raise TrainingError(f"unknown parallelism {strategy!r}")


def deepspeed_preset(stage: int) -> dict[str, Any]:
    """A DeepSpeed ZeRO config of ``stage`` leaving every size to the Trainer ("auto")."""
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


def _read_json(path: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read the parallelism config {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise TrainingError(f"the parallelism config {path} is not a JSON object")
    return value


# --- the caller's side -------------------------------------------------------------------


def launcher_command(
    launch_dir: Path,
    num_processes: int,
    options: LaunchOptions = LaunchOptions(),
    *,
    node_rank: int = 0,
) -> list[str]:
    """The ``torchrun`` command line that starts this machine's ranks of a run."""
    command = [sys.executable, "-m", "torch.distributed.run"]
    if options.num_nodes > 1:
        if not options.rdzv_endpoint:
            raise TrainingError("a multi-node run needs a rendezvous endpoint (host:port)")
        command += [
            f"--nnodes={options.num_nodes}",
            f"--node-rank={node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={options.rdzv_endpoint}",
            f"--rdzv-id={options.run_id}",
        ]
    else:
        command.append("--standalone")
    command += [
        f"--nproc-per-node={num_processes}",
        "--max-restarts=0",
        "-m",
        "training.core.launch",
        "rank",
        str(launch_dir),
    ]
    return command


def run_launched(
    spec: RunSpec,
    data: RunData,
    reporter: ProgressReporter,
    options: LaunchOptions = LaunchOptions(),
    *,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Train ``spec`` with ``spec.config.num_processes`` ranks per node; see the module doc.

    Blocks until the group exits. Returns rank 0's :class:`RunResult` (succeeded, or
    cancelled at a checkpoint); raises :class:`TrainingError` with a rank's message when
    one raised one, :class:`RankFailed` when a rank raised anything else or died.
    """
    num_processes = int(getattr(spec.config, "num_processes", 1))
    launch_dir = Path(spec.output_dir) / LAUNCH
    if launch_dir.exists():
        shutil.rmtree(launch_dir)  # an earlier attempt's files: events, stop, errors
    launch_dir.mkdir(parents=True)
    with (launch_dir / _JOB).open("wb") as job:
        pickle.dump((spec, data), job)
    command = launcher_command(launch_dir, num_processes, options)
    nodes = f" on each of {options.num_nodes} nodes" if options.num_nodes > 1 else ""
    reporter.log(f"launching {num_processes} processes{nodes}: {' '.join(command[1:])}")
    if options.num_nodes > 1:
        for rank in range(1, options.num_nodes):
            other = launcher_command(launch_dir, num_processes, options, node_rank=rank)
            reporter.log(f"node {rank} must run: {' '.join(other)}")
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(CODE_ROOT), *filter(None, [child_env.get("PYTHONPATH", "")])]
    )
    events = _EventTail(launch_dir / _EVENTS)
    with (launch_dir / _LOG).open("wb") as log:
        # torchrun, in a process that dies with this one (see _group_main).
        group = [sys.executable, "-m", "training.core.launch", "group", str(os.getpid())]
        process = subprocess.Popen(
            [*group, *command[3:]],
            cwd=CODE_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group to stop, ranks included
        )
        try:
            stop_sent = False
            while process.poll() is None:
                events.forward(reporter)
                if not stop_sent and reporter.should_stop():
                    (launch_dir / _STOP).touch()
                    stop_sent = True
                    reporter.log("stop requested: every process stops after its current step")
                time.sleep(options.poll_s)
        except BaseException:
            _stop_group(process, options.terminate_grace_s)
            raise
    events.forward(reporter)
    if process.returncode != 0:
        raise _failure(launch_dir, process.returncode, reporter)
    return _read_result(launch_dir)


def _stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the launcher's process group (torchrun passes it on), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


class _EventTail:
    """Reads the complete lines rank 0 appended to ``events.jsonl`` since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def forward(self, reporter: ProgressReporter) -> None:
        try:
            with self.path.open("rb") as events:
                events.seek(self.offset)
                chunk = events.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.offset += end
        for raw in chunk[:end].splitlines():
            event = json.loads(raw)
            if "report" in event:
                step, total, metrics = event["report"]
                reporter.report(int(step), int(total), {k: float(v) for k, v in metrics.items()})
            elif "log" in event:
                reporter.log(str(event["log"]))


def _failure(launch_dir: Path, returncode: int, reporter: ProgressReporter) -> TrainingError:
    """The exception for a group that exited with ``returncode``; logs the ranks' tracebacks.

    The first rank to raise is the cause; the others usually failed because it left (a
    collective that lost a peer), so their errors are logged but do not name the failure.
    """
    errors = sorted(
        (json.loads(path.read_text()) for path in launch_dir.glob(f"{_ERROR_PREFIX}*.json")),
        key=lambda e: (e["time"], e["rank"]),
    )
    for error in errors:
        for line in error["traceback"].rstrip().splitlines():
            reporter.log(f"[rank {error['rank']}] {line}")
    if not errors:
        tail = (launch_dir / _LOG).read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        for line in tail:
            reporter.log(f"[torchrun] {line}")
        return RankFailed(
            f"the training processes exited with status {returncode} without an error "
            "(killed, or out of memory?); the launcher's output is in the log"
        )
    first = errors[0]
    if first["user_error"]:
        return TrainingError(first["message"])
    return RankFailed(f"rank {first['rank']} failed: {first['type']}: {first['message']}")


def _read_result(launch_dir: Path) -> RunResult:
    try:
        raw = json.loads((launch_dir / _RESULT).read_text())
    except FileNotFoundError:
        raise RankFailed("the training processes exited without a result") from None
    return RunResult(
        status=raw["status"],
        steps=int(raw["steps"]),
        final_dir=Path(raw["final_dir"]) if raw["final_dir"] else None,
        checkpoint_dir=Path(raw["checkpoint_dir"]) if raw["checkpoint_dir"] else None,
        eval_metrics={k: float(v) for k, v in raw["eval_metrics"].items()},
    )


# --- a rank's side -----------------------------------------------------------------------


class RankReporter:
    """The :class:`ProgressReporter` of one rank of a launched run.

    Rank 0 appends reports and log lines to ``events.jsonl``; the other ranks' are dropped
    (the Trainer logs the same numbers on every rank: losses and metrics averaged over
    ranks). ``should_stop`` is a collective: rank 0 looks for the ``stop`` file and every
    rank receives its answer through one all-reduce, so the runners must ask it at the same
    points on every rank (they do: after each optimizer step and each logged step).
    """

    def __init__(self, launch_dir: Path, rank: int) -> None:
        self.launch_dir = Path(launch_dir)
        self.rank = rank
        self._stopped = False
        self._events = (self.launch_dir / _EVENTS).open("a") if rank == 0 else None

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self._write({"report": [int(step), int(total_steps), dict(metrics)]})

    def log(self, line: str) -> None:
        self._write({"log": line})

    def _write(self, event: dict[str, Any]) -> None:
        if self._events is not None:
            self._events.write(json.dumps(event, allow_nan=True) + "\n")
            self._events.flush()

    def should_stop(self) -> bool:
        if self._stopped:
            return True
        asked = self.rank == 0 and (self.launch_dir / _STOP).exists()
        self._stopped = _any_rank(asked)
        return self._stopped


def _any_rank(flag: bool) -> bool:
    """``flag`` OR-ed over all ranks (just ``flag`` before the process group exists)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = "cpu"
    if dist.get_backend() == "nccl":
        device = f"cuda:{torch.cuda.current_device()}"
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _write_error(launch_dir: Path, rank: int, exc: BaseException) -> None:
    error = {
        "rank": rank,
        "time": time.time(),
        "type": type(exc).__name__,
        "message": str(exc),
        "user_error": isinstance(exc, TrainingError),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    path = launch_dir / f"{_ERROR_PREFIX}{rank}.json"
    path.with_suffix(".tmp").write_text(json.dumps(error))
    path.with_suffix(".tmp").replace(path)


def _write_result(launch_dir: Path, result: RunResult) -> None:
    raw = {
        "status": result.status,
        "steps": result.steps,
        "final_dir": str(result.final_dir) if result.final_dir else "",
        "checkpoint_dir": str(result.checkpoint_dir) if result.checkpoint_dir else "",
        "eval_metrics": dict(result.eval_metrics),
    }
    (launch_dir / f"{_RESULT}.tmp").write_text(json.dumps(raw))
    (launch_dir / f"{_RESULT}.tmp").replace(launch_dir / _RESULT)


def _die_with_parent(sig: signal.Signals) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux only).

    A worker killed with SIGKILL cannot stop its process group; without this the group
    would train on, unseen, while the watchdog fails the run and a resume starts another.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig))


def _group_main(argv: Sequence[str]) -> int:
    """torchrun with ``argv[1:]``, stopped (SIGTERM, which it passes on to the ranks) when
    the process ``argv[0]`` that launched it exits."""
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != int(argv[0]):
        return 1  # the launcher exited before the line above
    from torch.distributed.run import main

    main(list(argv[1:]))
    return 0


def _rank_main(argv: Sequence[str]) -> int:
    """One rank: train the job in ``argv[0]`` (a launch folder); 0 on success, 1 if it raised."""
    from training.core.runners import run_training

    _die_with_parent(signal.SIGKILL)  # torchrun gone: nobody would stop this rank
    launch_dir = Path(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    try:
        with (launch_dir / _JOB).open("rb") as job:
            spec, data = pickle.load(job)
        result = run_training(spec, data, RankReporter(launch_dir, rank))
        if rank == 0:
            _write_result(launch_dir, result)
    except Exception as exc:  # noqa: BLE001 - any failure of a rank fails the run, reported as is
        _write_error(launch_dir, rank, exc)
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    """``group <launcher pid> <torchrun args>...`` or ``rank <launch folder>``."""
    mains = {"group": _group_main, "rank": _rank_main}
    return mains[argv[0]](argv[1:])


def _end_rank(code: int) -> None:
    """End a rank's process now, with ``code``, skipping the interpreter's teardown.

    Everything a rank leaves behind (checkpoints, ``result.json``, ``error-<r>.json``) is
    written and closed by then. What the teardown would add is the destruction of the
    process group's native threads, which can abort the process ("terminate called without
    an active exception", SIGABRT) after it has done its work, and torchrun then fails the
    whole run for it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    # Run the module under its own name, so its classes are the ones the runners import.
    from training.core import launch

    status = launch.main(sys.argv[1:])
    if sys.argv[1:2] == ["rank"]:
        launch._end_rank(status)
    sys.exit(status)
