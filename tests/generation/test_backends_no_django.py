"""The ML code imports without Django, and the backends without their heavy libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter: this test process has Django loaded already.
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_it_imports_the_ml_code_without_django() -> None:
    result = _run(
        "import sys\n"
        "import generation.backends, generation.backends.transformers, generation.backends.openai\n"
        "import generation.backends.vllm, generation.tiny_model, generation.importers\n"
        "import labeling.agreement\n"
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_it_imports_the_backends_without_torch_vllm_or_httpx() -> None:
    # Workers of one kind need not install (or pay the import time of) the others' libraries.
    result = _run(
        "import sys\n"
        "import generation.backends, generation.backends.transformers\n"
        "import generation.backends.vllm, generation.backends.openai\n"
        "heavy = {'torch', 'transformers', 'vllm', 'httpx'} & set(sys.modules)\n"
        "assert not heavy, sorted(heavy)\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
