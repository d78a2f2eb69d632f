"""``training.core`` must import without Django (and, except for the losses, without torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys

import training.core
import training.core.configs
import training.core.data
import training.core.grpo
import training.core.hacking
import training.core.hf
import training.core.judge
import training.core.launch
import training.core.logps
import training.core.ppo
import training.core.rl
import training.core.ratings
import training.core.preference
import training.core.reporting
import training.core.rollouts
import training.core.runners
import training.core.scoring
import training.core.sft

assert "torch" not in sys.modules, "a core module other than losses imported torch"
assert "vllm" not in sys.modules, "a core module imported vllm"

import training.core.losses

leaked = sorted(name for name in sys.modules if name == "django" or name.startswith("django."))
assert not leaked, leaked
print("ok")
"""


def test_it_imports_training_core_without_django() -> None:
    # A fresh interpreter: this one already has Django loaded by pytest-django.
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
