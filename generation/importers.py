"""Parse prompt and completion files: JSONL, CSV and Anthropic HH-RLHF. Django-free.

Parsers validate the whole file before returning anything and raise one
:class:`ImportFileError` naming the first bad line, so the caller can write all or nothing.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

ROLES = ("system", "user", "assistant")
MAX_LINE_BYTES = 1_000_000
DEFAULT_MAX_RECORDS = 1_000_000
FORMATS = ("jsonl", "csv", "hh")

Message = dict[str, str]


class ImportFileError(ValueError):
    """A file that cannot be imported; ``line`` is 1-based, or None for the whole file."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line is not None else message)


def storable_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; byte-level models and user files can produce it."""
    return text.replace("\x00", "\ufffd")


def _normalise_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(frozen=True)
class PromptRecord:
    text: str
    messages: list[Message] | None
    line: int

    @property
    def content_hash(self) -> str:
        """sha256 of the normalised content (NFC, whitespace collapsed, case kept)."""
        if self.messages is None:
            canonical = _normalise_text(self.text)
        else:
            canonical = json.dumps(
                [[m["role"], _normalise_text(m["content"])] for m in self.messages],
                ensure_ascii=False,
                separators=(",", ":"),
            )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ImportedGroup:
    prompt: PromptRecord
    completions: list[str]
    model_name: str


def detect_format(filename: str) -> str:
    name = filename.lower()
    for suffix in (".gz",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".csv"):
        return "csv"
    if "hh-rlhf" in name or "hh_rlhf" in name or re.search(r"(^|[^a-z])hh([^a-z]|$)", name):
        return "hh"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ImportFileError(None, f"cannot tell the format of {filename!r}; choose jsonl, csv or hh")


def render_messages(messages: list[Message]) -> str:
    """A readable rendering of a conversation, for display and search."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m['role']]}: {m['content']}" for m in messages)


# --- reading ---------------------------------------------------------------------------------


def _read_bytes(data: bytes | str | IO[bytes] | IO[str]) -> bytes | str:
    if isinstance(data, bytes | str):
        return data
    return data.read()


def _decode(data: bytes | str | IO[bytes] | IO[str]) -> str:
    raw = _read_bytes(data)
    if isinstance(raw, str):
        return raw.removeprefix("\ufeff")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ImportFileError(None, f"the gzip file is corrupt: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportFileError(line, "the file is not valid UTF-8") from None


def _lines(text: str, max_records: int) -> Iterator[tuple[int, str]]:
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line.encode("utf-8")) > MAX_LINE_BYTES:
            raise ImportFileError(number, f"the line is over {MAX_LINE_BYTES // 1_000_000} MB")
        count += 1
        if count > max_records:
            raise ImportFileError(number, f"the file has more than {max_records} records")
        yield number, line


def _json_line(number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ImportFileError(number, f"invalid JSON ({exc.msg} at column {exc.colno})") from None


# --- prompts -----------------------------------------------------------------------------------


def _messages(number: int, value: Any, field: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise ImportFileError(number, f"{field!r} must be a non-empty list of messages")
    messages: list[Message] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ImportFileError(
                number, f"{field}[{index}] must be an object with role and content"
            )
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise ImportFileError(
                number, f"{field}[{index}] has role {role!r}; expected one of {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise ImportFileError(number, f"{field}[{index}].content must be a string")
        messages.append({"role": role, "content": storable_text(content)})
    if not any(m["content"].strip() for m in messages):
        raise ImportFileError(number, f"{field!r} has only empty messages")
    return messages


def _prompt_record(number: int, value: Any, field: str = "prompt") -> PromptRecord:
    if isinstance(value, str):
        if not value.strip():
            raise ImportFileError(number, f"{field!r} is empty")
        return PromptRecord(text=storable_text(value), messages=None, line=number)
    if isinstance(value, list):
        messages = _messages(number, value, field)
        return PromptRecord(text=render_messages(messages), messages=messages, line=number)
    if value is None:
        raise ImportFileError(number, f"{field!r} is missing")
    raise ImportFileError(
        number, f"{field!r} must be a string or a list of messages, not {type(value).__name__}"
    )


def _jsonl_prompts(text: str, max_records: int) -> list[PromptRecord]:
    records = []
    for number, line in _lines(text, max_records):
        obj = _json_line(number, line)
        if isinstance(obj, str):
            records.append(_prompt_record(number, obj))
        elif isinstance(obj, dict):
            if "prompt" in obj:
                records.append(_prompt_record(number, obj["prompt"]))
            elif "messages" in obj:
                records.append(_prompt_record(number, obj["messages"], "messages"))
            else:
                raise ImportFileError(number, "'prompt' is missing (or give 'messages')")
        else:
            raise ImportFileError(number, "each line must be a JSON object or a string")
    return records


def _csv_prompts(text: str, max_records: int) -> list[PromptRecord]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise ImportFileError(1, f"bad CSV: {exc}") from None
    names = [h.strip().lower() for h in header]
    column = next((names.index(c) for c in ("prompt", "text") if c in names), None)
    if column is None:
        raise ImportFileError(1, "the header has no 'prompt' (or 'text') column")
    records: list[PromptRecord] = []
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ImportFileError(start, f"bad CSV: {exc}") from None
        if row and any(cell.strip() for cell in row):
            if column >= len(row):
                raise ImportFileError(start, "the row has no value in the prompt column")
            if len(records) >= max_records:
                raise ImportFileError(start, f"the file has more than {max_records} records")
            records.append(_prompt_record(start, row[column]))
        start = reader.line_num + 1
    return records


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def _hh_turns(number: int, transcript: Any, field: str) -> list[Message]:
    if not isinstance(transcript, str) or not transcript.strip():
        raise ImportFileError(number, f"{field!r} must be a non-empty transcript string")
    text = transcript if transcript.startswith("\n\n") else "\n\n" + transcript
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise ImportFileError(number, f"{field!r} does not start with a Human: or Assistant: turn")
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        turns.append({"role": role, "content": storable_text(content.strip())})
    if len(turns) < 2 or turns[-1]["role"] != "assistant":
        raise ImportFileError(number, f"{field!r} must end with an Assistant: turn")
    return turns


def _hh_row(number: int, obj: Any) -> tuple[PromptRecord, str, str]:
    """The shared dialogue before the answers, and the chosen and rejected answers.

    Usually chosen and rejected differ only in their final Assistant: turn. A few rows of
    the public data split a turn badly (a "Human:" inside an answer), so the prompt is the
    longest run of identical turns that ends with a Human: turn, and each answer is the rest
    of its transcript.
    """
    if not isinstance(obj, dict):
        raise ImportFileError(number, "each line must be an object with 'chosen' and 'rejected'")
    chosen = _hh_turns(number, obj.get("chosen"), "chosen")
    rejected = _hh_turns(number, obj.get("rejected"), "rejected")
    shared = 0
    limit = min(len(chosen), len(rejected)) - 1
    while shared < limit and chosen[shared] == rejected[shared]:
        shared += 1
    while shared and chosen[shared - 1]["role"] != "user":
        shared -= 1
    if not shared:
        raise ImportFileError(
            number, "'chosen' and 'rejected' share no Human: turn to use as prompt"
        )
    prompt = chosen[:shared]
    record = PromptRecord(text=render_messages(prompt), messages=prompt, line=number)
    return record, _hh_answer(chosen[shared:]), _hh_answer(rejected[shared:])


def _hh_answer(turns: list[Message]) -> str:
    """The first turn's text, then any later turns in the transcript's own notation."""
    speaker = {"user": "Human", "assistant": "Assistant"}
    rest = "".join(f"\n\n{speaker[t['role']]}: {t['content']}" for t in turns[1:])
    return turns[0]["content"] + rest


def _hh_rows(text: str, max_records: int) -> list[tuple[PromptRecord, str, str]]:
    return [_hh_row(number, _json_line(number, line)) for number, line in _lines(text, max_records)]


def parse_prompts(
    data: bytes | str | IO[bytes] | IO[str], *, format: str, max_records: int = DEFAULT_MAX_RECORDS
) -> list[PromptRecord]:
    """Every prompt of a JSONL, CSV or HH-RLHF file, or :class:`ImportFileError`."""
    text = _decode(data)
    if format == "jsonl":
        return _jsonl_prompts(text, max_records)
    if format == "csv":
        return _csv_prompts(text, max_records)
    if format == "hh":
        return [prompt for prompt, _, _ in _hh_rows(text, max_records)]
    raise ImportFileError(None, f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def parse_imported_completions(
    data: bytes | str | IO[bytes] | IO[str], *, format: str, max_records: int = DEFAULT_MAX_RECORDS
) -> list[ImportedGroup]:
    """Prompts with completions someone already has: JSONL or HH-RLHF (chosen, rejected)."""
    text = _decode(data)
    if format == "hh":
        return [
            ImportedGroup(prompt=prompt, completions=[chosen, rejected], model_name="")
            for prompt, chosen, rejected in _hh_rows(text, max_records)
        ]
    if format != "jsonl":
        raise ImportFileError(None, f"completions import from jsonl or hh, not {format!r}")
    groups = []
    for number, line in _lines(text, max_records):
        obj = _json_line(number, line)
        if not isinstance(obj, dict):
            raise ImportFileError(number, "each line must be a JSON object")
        prompt = _prompt_record(number, obj.get("prompt"))
        completions = obj.get("completions")
        if not isinstance(completions, list) or not completions:
            raise ImportFileError(number, "'completions' must be a non-empty list of strings")
        for index, completion in enumerate(completions):
            if not isinstance(completion, str) or not completion.strip():
                raise ImportFileError(number, f"completions[{index}] must be a non-empty string")
        model = obj.get("model", "")
        if not isinstance(model, str):
            raise ImportFileError(number, "'model' must be a string")
        groups.append(
            ImportedGroup(
                prompt=prompt,
                completions=[storable_text(c) for c in completions],
                model_name=storable_text(model),
            )
        )
    return groups


def dedupe(records: list[PromptRecord]) -> tuple[list[PromptRecord], int]:
    """First occurrence of each normalised prompt, and how many repeats were dropped."""
    seen: set[str] = set()
    kept = []
    for record in records:
        key = record.content_hash
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept, len(records) - len(kept)
