"""Where a model's weights may come from: a hub id, or a local folder under one of the
configured roots (``PREFLAB_MODEL_ROOTS``, default the data dir).

A local source is stored as an absolute path, so the web app, every worker and the
management commands read the same folder whatever their working directory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

# "gpt2", "org/name", "org/name-v1.5": what the hub (and vLLM) accept as a model id.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


class ModelSourceError(ValueError):
    pass


def model_source_resolve(source: str, roots: Sequence[Path]) -> str:
    """The source to store: a hub id unchanged, or a local folder as an absolute path that
    lies under one of ``roots`` (a relative path is taken relative to the first root).

    Raises ``ModelSourceError`` for a path outside the roots (``/etc``, ``../../x``).
    """
    text = source.strip()
    if not text:
        raise ModelSourceError("a source is required: a local folder or a hub id")
    if not roots:
        raise ModelSourceError("no model roots are configured (PREFLAB_MODEL_ROOTS)")
    try:
        return _resolve(text, [Path(root) for root in roots])
    except OSError as exc:  # a name too long for the file system, a loop of links...
        raise ModelSourceError(f"{text[:80]!r} is not a usable path: {exc.strerror}") from None


def _resolve(text: str, roots: list[Path]) -> str:
    first = roots[0]
    looks_local = text.startswith(("/", "~", ".")) or "\\" in text or ".." in text.split("/")
    if not looks_local:
        if (first / text).exists() or not _HUB_ID.fullmatch(text):
            looks_local = True
        else:
            return text
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = first / path
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise ModelSourceError(
            f"a local model must lie under {allowed} (PREFLAB_MODEL_ROOTS); {text!r} does not"
        )
    return str(resolved)
