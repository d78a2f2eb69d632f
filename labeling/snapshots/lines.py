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


class LinesDigest:
    """The content hash, fed section by section and line by line as the lines are made:
    a build hashes each line as it writes it, so no section has to be held in memory.

    Each section is its name and a newline, then every line followed by a newline; a
    section opened with ``optional=True`` (the unpaired lines) adds its heading only if a
    line follows. :func:`snapshot_lines_digest` is this over whole sections.
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._batch: list[str] = []
        self._heading = b""

    def section(self, name: str, *, optional: bool = False) -> None:
        self._flush()
        self._heading = f"{name}\n".encode()
        if not optional:
            self._digest.update(self._heading)
            self._heading = b""

    def add(self, line: str) -> None:
        if self._heading:
            self._digest.update(self._heading)
            self._heading = b""
        self._batch.append(line)
        if len(self._batch) >= 2000:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._digest.update(("\n".join(self._batch) + "\n").encode("utf-8"))
            self._batch = []

    def hexdigest(self) -> str:
        self._flush()
        return self._digest.hexdigest()


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
    digest = LinesDigest()
    for name, lines in (("trl", pair_lines), ("listwise", listwise), ("sft", sft)):
        digest.section(name)
        for line in lines:
            digest.add(line)
    digest.section("unpaired", optional=True)
    for line in unpaired:
        digest.add(line)
    return digest.hexdigest()
