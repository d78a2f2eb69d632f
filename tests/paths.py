"""Files the tests read. All of them live inside the repository: a fresh clone is enough."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
# Anthropic's HH-RLHF harmless-base test split, MIT licensed (data/hh-rlhf-LICENSE).
HH_FILE = DATA_DIR / "hh-rlhf-harmless-base-test.jsonl.gz"
