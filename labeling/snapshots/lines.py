"""How a snapshot's frozen lines become bytes: the JSON-lines stream every export sends,
and the content hash over them (the same bytes, hashed once at build and recomputable from
the exports at any time)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator


def lines_joined(lines: Iterable[str], chunk_size: int) -> Iterator[bytes]:
    """``lines`` as UTF-8, each followed by a newline, ``chunk_size`` lines per chunk."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= chunk_size:
            yield ("\n".join(batch) + "\n").encode("utf-8")
            batch = []
    if batch:
        yield ("\n".join(batch) + "\n").encode("utf-8")


def snapshot_lines_digest(
    pair_lines: Iterable[str],
    listwise: Iterable[str],
    sft: Iterable[str],
    unpaired: Iterable[str] = (),
) -> str:
    """sha256 over every export's bytes: the TRL lines (ties have none), then the listwise
    lines, then the SFT lines, each section headed by its name; then, when the snapshot
    froze single-answer labels, the unpaired (KTO) lines under their own heading (absent
    when there are none, so snapshots without them keep the hash they always had)."""
    digest = hashlib.sha256()
    for name, lines in (("trl", pair_lines), ("listwise", listwise), ("sft", sft)):
        digest.update(f"{name}\n".encode())
        for chunk in lines_joined(lines, 2000):
            digest.update(chunk)
    for i, chunk in enumerate(lines_joined(unpaired, 2000)):
        if i == 0:
            digest.update(b"unpaired\n")
        digest.update(chunk)
    return digest.hexdigest()
