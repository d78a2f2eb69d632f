from __future__ import annotations

import subprocess
import sys


def test_it_imports_the_ml_code_without_django() -> None:
    code = (
        "import sys\n"
        "import generation.backends, generation.backends.transformers, generation.backends.openai\n"
        "import generation.backends.vllm, generation.tiny_model, generation.importers\n"
        "import labeling.agreement\n"
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
