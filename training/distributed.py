"""Multi-process training runs, the Django side.

What a run's config asks for is checked against this deployment when the run is created
(:func:`config_check_deployment`): DeepSpeed needs CUDA on the training workers, a config
file must be readable JSON, a run on several machines needs a rendezvous endpoint. When it
runs, :func:`run_train` trains a one-process run in the worker's own process and launches
any other as a torchrun process group (:mod:`training.core.launch`), which reports through
the same reporter.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from training.core.configs import CommonConfig, ConfigError
from training.core.data import RunData
from training.core.launch import LaunchOptions, run_launched
from training.core.reporting import ProgressReporter
from training.core.runners import RunResult, RunSpec, run_training

__all__ = ["config_check_deployment", "run_train", "training_workers_have_cuda"]


def training_workers_have_cuda() -> bool:
    """Whether the training workers have CUDA GPUs (``settings.TRAINING_CUDA``; "auto"
    asks torch here)."""
    value = settings.TRAINING_CUDA.strip().lower()
    if value == "auto":
        import torch

        return bool(torch.cuda.is_available())
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"PREFLAB_TRAINING_CUDA={value!r}: use auto, 1 or 0")


def config_check_deployment(config: CommonConfig) -> None:
    """Raise :class:`ConfigError` when this deployment cannot run ``config``'s parallelism."""
    if config.parallelism.startswith("deepspeed") and not training_workers_have_cuda():
        raise ConfigError(
            "parallelism",
            "DeepSpeed needs CUDA GPUs, and the training workers have none "
            "(PREFLAB_TRAINING_CUDA): use ddp or fsdp",
        )
    path = config.parallelism_config.strip()
    if path:
        try:
            value = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError("parallelism_config", f"cannot read {path}: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigError("parallelism_config", f"{path} is not a JSON object")
    if config.num_nodes > 1 and not settings.TRAINING_RDZV_ENDPOINT:
        raise ConfigError(
            "num_nodes",
            "a run on several machines needs PREFLAB_TRAINING_RDZV_ENDPOINT (host:port of "
            "the rendezvous) in the workers' settings",
        )


def run_train(spec: RunSpec, data: RunData, reporter: ProgressReporter) -> RunResult:
    """Train ``spec`` here, or as a process group when its config asks for several."""
    if spec.config.world_size == 1:
        return run_training(spec, data, reporter)
    options = LaunchOptions(
        num_nodes=spec.config.num_nodes,
        rdzv_endpoint=settings.TRAINING_RDZV_ENDPOINT,
        run_id=f"preflab-{Path(spec.output_dir).name}",
    )
    return run_launched(spec, data, reporter, options)
