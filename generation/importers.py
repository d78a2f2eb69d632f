"""Parse prompt, completion and preference files: JSONL, CSV, Anthropic HH-RLHF and TRL
preference JSONL. Django-free.

Parsers validate the whole file before returning anything and raise one
:class:`ImportFileError` naming the first bad line, so the caller can write all or nothing.
Gzip input is decompressed transparently; text is UTF-8, a byte-order mark is tolerated.
Every text comes back byte for byte as the file holds it (nothing stripped, collapsed or
normalised); text that no database can store exactly (NUL, lone surrogates) is refused.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os.path import commonprefix
from typing import IO, Any

from generation.backends.prompting import render_messages

ROLES = ("system", "user", "assistant")
FORMATS = ("jsonl", "csv", "hh")
MAX_LINE_BYTES = 1_000_000
DEFAULT_MAX_RECORDS = 1_000_000
# Bounds the decompressed size too: a 1 MB gzip upload can expand to gigabytes.
DEFAULT_MAX_BYTES = 200_000_000

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"

Message = dict[str, str]
Source = bytes | str | IO[bytes] | IO[str]


class ImportFileError(ValueError):
    """A file that cannot be imported; ``line`` is 1-based, or None for the whole file."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line is not None else message)


# PostgreSQL text cannot hold NUL, and no database can store a lone UTF-16 surrogate (JSON's
# "\ud800" decodes to one): imported text holding either is refused, never rewritten.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored byte for byte, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "contains a NUL character (U+0000), which cannot be stored"
    return f"contains a lone surrogate (U+{ord(char):04X}), which is not valid Unicode text"


def _checked(number: int, text: str, field: str) -> str:
    """``text`` unchanged, or an :class:`ImportFileError` if it cannot be stored exactly."""
    problem = unstorable_problem(text)
    if problem is not None:
        raise ImportFileError(number, f"{field!r} {problem}")
    return text


def storable_generated_text(text: str) -> tuple[str, int]:
    """A model's output as stored, and how many characters had to be replaced.

    Generated text is kept as the backend decoded it. The one exception is what no database
    column can hold (NUL, which byte-level models can emit, and lone surrogates from a
    server's JSON): each becomes U+FFFD, and the count is recorded beside the completion so
    the replacement is never silent.
    """
    replaced = 0

    def substitute(_: re.Match[str]) -> str:
        nonlocal replaced
        replaced += 1
        return "\ufffd"

    return _UNSTORABLE.sub(substitute, text), replaced


def _normalise_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def exact_hash(text: str, messages: list[Message] | None) -> str:
    """sha256 of a prompt's exact content: the deduplication key, so texts that differ by one
    byte (a space, a Unicode normal form) are different prompts."""
    canonical = (
        ["text", text]
        if messages is None
        else ["messages", [[m["role"], m["content"]] for m in messages]]
    )
    return hashlib.sha256(
        json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


@dataclass(frozen=True)
class PromptRecord:
    """One prompt: plain ``text``, or a conversation in ``messages`` rendered into ``text``.

    ``line`` is the 1-based line the record starts on (for CSV the header is line 1).
    """

    text: str
    messages: list[Message] | None
    line: int

    @property
    def exact_hash(self) -> str:
        """The deduplication key: see :func:`exact_hash`."""
        return exact_hash(self.text, self.messages)

    @property
    def content_hash(self) -> str:
        """sha256 of the normalised content (NFC, whitespace collapsed, case kept).

        Never used to merge prompts (that is :attr:`exact_hash`): it is the key that keeps
        near-duplicates together, on the same side of a snapshot's held-out split. Stored
        beside every prompt, so changing this scheme would move existing prompts' splits.
        """
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
    """A prompt with completions someone already has; ``model_name`` is "" when unknown."""

    prompt: PromptRecord
    completions: list[str]
    model_name: str


def dedupe(records: Iterable[PromptRecord]) -> tuple[list[PromptRecord], int]:
    """First occurrence of each exact prompt, and how many exact repeats were dropped."""
    seen: set[str] = set()
    kept: list[PromptRecord] = []
    skipped = 0
    for record in records:
        key = record.exact_hash
        if key in seen:
            skipped += 1
            continue
        seen.add(key)
        kept.append(record)
    return kept, skipped


# --- formats -----------------------------------------------------------------------------------


def _base_name(filename: str) -> str:
    name = filename.lower().rsplit("/", 1)[-1]
    return name.removesuffix(".gz")


def _names_hh(name: str) -> bool:
    return (
        "hh-rlhf" in name or "hh_rlhf" in name or bool(re.search(r"(^|[^a-z])hh([^a-z]|$)", name))
    )


def sniff_format(first_line: str | bytes) -> str:
    """The format a file's first non-blank line looks like: "hh", "jsonl" or "csv".

    A JSON object with both ``chosen`` and ``rejected`` is an HH-RLHF row; any other JSON
    object or string is JSONL; anything else is taken for a CSV header.
    """
    if isinstance(first_line, bytes):
        first_line = first_line.removeprefix(UTF8_BOM).decode("utf-8", errors="replace")
    try:
        value = json.loads(first_line.removeprefix("\ufeff"))
    except (json.JSONDecodeError, RecursionError):
        return "csv"
    if isinstance(value, dict):
        return "hh" if "chosen" in value and "rejected" in value else "jsonl"
    if isinstance(value, str):
        return "jsonl"
    return "csv"


def detect_format(filename: str, data: bytes | str | None = None) -> str:
    """The format to parse ``filename`` with, looking at its first line when ``data`` is given.

    ``.csv`` is CSV whatever it holds. JSON files (``.jsonl``, ``.json``, ``.ndjson``, any of
    them gzipped) are HH-RLHF when their first line has ``chosen`` and ``rejected``, and JSONL
    otherwise; without ``data`` a name mentioning "hh" decides. Other names need ``data``.
    """
    name = _base_name(filename)
    if name.endswith(".csv"):
        return "csv"
    line = _first_line(data) if data is not None else None
    if name.endswith((".jsonl", ".json", ".ndjson")) or _names_hh(name):
        if line is not None:
            # Content wins over the name, but a JSON-named file is never CSV: a broken first
            # line should be reported as invalid JSON, not as a CSV without a prompt column.
            return "hh" if sniff_format(line) == "hh" else "jsonl"
        return "hh" if _names_hh(name) else "jsonl"
    if line is not None:
        return sniff_format(line)
    raise ImportFileError(None, f"cannot tell the format of {filename!r}; choose jsonl, csv or hh")


def _first_line(data: bytes | str) -> str | None:
    """The first non-blank line of a (possibly gzipped) file, reading no more than it needs."""
    if isinstance(data, bytes):
        if data[:2] == GZIP_MAGIC:
            data = _gunzip_head(data)
        data = data.removeprefix(UTF8_BOM).decode("utf-8", errors="replace")
    for line in data.removeprefix("\ufeff").split("\n"):
        if line.strip():
            return line
    return None


def _gunzip_head(raw: bytes) -> bytes:
    head = b""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            while len(head) <= MAX_LINE_BYTES:
                chunk = stream.read(64 * 1024)
                if not chunk:
                    break
                head += chunk
                if head.strip() and b"\n" in head.lstrip():
                    break
    except (OSError, EOFError, zlib.error):
        pass  # sniffing is best effort; the parser reports a corrupt file properly
    return head


# --- reading -----------------------------------------------------------------------------------


def _size(limit: int) -> str:
    if limit >= 1_000_000:
        return f"{limit / 1_000_000:g} MB"
    if limit >= 1_000:
        return f"{limit / 1_000:g} kB"
    return f"{limit} bytes"


def _decode(data: Source, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    too_big = ImportFileError(None, f"the file is over {_size(max_bytes)} (uncompressed)")
    if isinstance(data, str):
        if len(data) > max_bytes:
            raise too_big
        return data.removeprefix("\ufeff")
    raw = data if isinstance(data, bytes) else data.read(max_bytes + 1)
    if isinstance(raw, str):
        return _decode(raw, max_bytes)
    if raw[:2] == GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
                raw = stream.read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImportFileError(None, f"the gzip file is corrupt: {exc}") from None
    if len(raw) > max_bytes:
        raise too_big
    raw = raw.removeprefix(UTF8_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportFileError(line, "the file is not valid UTF-8") from None


def _check_size(number: int, text: str) -> None:
    # UTF-8 takes at most 4 bytes a character, so short lines skip the encode.
    if len(text) * 4 > MAX_LINE_BYTES and len(text.encode("utf-8")) > MAX_LINE_BYTES:
        raise ImportFileError(number, f"the line is over {_size(MAX_LINE_BYTES)}")


def _lines(text: str, max_records: int) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their numbers.

    Splits on "\\n" only: ``str.splitlines`` would also split on U+2028, U+0085 and other
    characters that JSON written with ``ensure_ascii=False`` leaves raw inside strings.
    """
    count = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        _check_size(number, line)
        count += 1
        if count > max_records:
            raise ImportFileError(number, f"the file has more than {max_records} records")
        yield number, line


def _json_line(number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ImportFileError(number, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ImportFileError(number, "invalid JSON (nested too deeply)") from None


# --- prompts -----------------------------------------------------------------------------------


def _messages(number: int, value: list[Any], field: str) -> list[Message]:
    if not value:
        raise ImportFileError(number, f"{field!r} must be a non-empty list of messages")
    messages: list[Message] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ImportFileError(
                number, f"{field}[{index}] must be an object with role and content"
            )
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise ImportFileError(
                number, f"{field}[{index}] has role {role!r}; expected one of {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise ImportFileError(number, f"{field}[{index}].content must be a string")
        messages.append({"role": role, "content": _checked(number, content, f"{field}[{index}]")})
    if not any(m["content"].strip() for m in messages):
        raise ImportFileError(number, f"{field!r} has only empty messages")
    return messages


def _prompt_record(number: int, value: Any, field: str = "prompt") -> PromptRecord:
    if isinstance(value, str):
        if not value.strip():
            raise ImportFileError(number, f"{field!r} is empty")
        return PromptRecord(text=_checked(number, value, field), messages=None, line=number)
    if isinstance(value, list):
        messages = _messages(number, value, field)
        return PromptRecord(text=render_messages(messages), messages=messages, line=number)
    if value is None:
        raise ImportFileError(number, f"{field!r} is missing")
    raise ImportFileError(
        number, f"{field!r} must be a string or a list of messages, not {type(value).__name__}"
    )


def _jsonl_prompts(text: str, max_records: int) -> list[PromptRecord]:
    records: list[PromptRecord] = []
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
    # The csv module refuses fields over 128 kB by default and the limit is process-wide;
    # raise it (never lower it) so our own 1 MB record check is the one users meet.
    if csv.field_size_limit() <= MAX_LINE_BYTES:
        csv.field_size_limit(MAX_LINE_BYTES + 1)
    # strict: an unclosed quote is an error, not a field that silently eats the file's rest.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    column: int | None = None
    field = "prompt"
    records: list[PromptRecord] = []
    start = 1  # csv counts physical lines; a record starts after the previous one ends
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise ImportFileError(
                    start, f"the record is over {_size(MAX_LINE_BYTES)}"
                ) from None
            raise ImportFileError(start, f"bad CSV: {exc}") from None
        if any(cell.strip() for cell in row):
            _check_size(start, "".join(row))
            if column is None:
                names = [h.strip().lower() for h in row]
                column = next((names.index(c) for c in ("prompt", "text") if c in names), None)
                if column is None:
                    raise ImportFileError(start, "the header has no 'prompt' (or 'text') column")
                field = row[column].strip()
            else:
                if column >= len(row):
                    raise ImportFileError(start, f"the row has no {field!r} value")
                if len(records) >= max_records:
                    raise ImportFileError(start, f"the file has more than {max_records} records")
                records.append(_prompt_record(start, row[column], field))
        start = reader.line_num + 1
    return records


# --- HH-RLHF -----------------------------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_SPEAKER = {"user": "Human", "assistant": "Assistant"}


def hh_transcript(prompt: list[Message], answer: str) -> str:
    """The HH-RLHF transcript that ``prompt`` and one of its answers were imported from.

    The inverse of the import's split, byte for byte: every turn is written as
    ``"\n\n" + speaker + ": " + content`` and the answer follows a final ``Assistant:``.
    Raises ValueError for a role HH-RLHF cannot express (system).
    """
    turns = []
    for message in prompt:
        speaker = _HH_SPEAKER.get(message["role"])
        if speaker is None:
            raise ValueError(f"HH-RLHF has no {message['role']!r} turns")
        turns.append(f"\n\n{speaker}: {message['content']}")
    return "".join(turns) + "\n\nAssistant: " + answer


def _hh_turns(number: int, transcript: Any, field: str) -> list[Message]:
    """The turns of a transcript, each exactly as written after its ``Human: `` or
    ``Assistant: `` (the one space after the colon is notation; any further space is text)."""
    if transcript is None:
        raise ImportFileError(number, f"{field!r} is missing")
    if not isinstance(transcript, str) or not transcript.strip():
        raise ImportFileError(number, f"{field!r} must be a non-empty transcript string")
    _checked(number, transcript, field)
    text = transcript if transcript.startswith("\n\n") else "\n\n" + transcript
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise ImportFileError(number, f"{field!r} does not start with a Human: or Assistant: turn")
    turns: list[Message] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        turns.append({"role": role, "content": content.removeprefix(" ")})
    if len(turns) < 2 or turns[-1]["role"] != "assistant":
        raise ImportFileError(number, f"{field!r} must end with an Assistant: turn")
    return turns


def _answer_text(number: int, turns: list[Message], field: str) -> str:
    """One side's answer: its first (assistant) turn's text, then any later turns in HH-RLHF
    notation, so that :func:`hh_transcript` gives the whole dialogue back."""
    if not turns:
        raise ImportFileError(number, f"{field!r} has no answer after the shared prompt")
    if turns[0]["role"] != "assistant":
        raise ImportFileError(
            number,
            f"{field!r} continues with a {turns[0]['role']} turn after the shared prompt; "
            "an answer must start with an assistant turn",
        )
    rest = []
    for turn in turns[1:]:
        speaker = _HH_SPEAKER.get(turn["role"])
        if speaker is None:
            raise ImportFileError(number, f"{field!r} has a {turn['role']} turn inside its answer")
        rest.append(f"\n\n{speaker}: {turn['content']}")
    return turns[0]["content"] + "".join(rest)


def _split_dialogues(
    number: int, chosen: list[Message], rejected: list[Message], shared_turn: str
) -> tuple[list[Message], str, str]:
    """The longest run of identical leading turns that ends with a user turn, and each side's
    answer after it (see :func:`_answer_text`).

    Usually chosen and rejected differ only in their final assistant turn. Five of the
    2,312 rows of the public harmless-base test split differ earlier (a "Human:" typed
    inside an answer, or an extra turn): their answers hold the rest of their dialogue.
    Dialogues sharing no user turn at all are two different conversations and are refused.
    """
    shared = 0
    limit = min(len(chosen), len(rejected))
    while shared < limit and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == len(chosen) == len(rejected):
        raise ImportFileError(number, "'chosen' and 'rejected' are the same dialogue")
    while shared and chosen[shared - 1]["role"] != "user":
        shared -= 1
    if not shared:
        raise ImportFileError(
            number, f"'chosen' and 'rejected' share no {shared_turn} turn to use as the prompt"
        )
    return (
        chosen[:shared],
        _answer_text(number, chosen[shared:], "chosen"),
        _answer_text(number, rejected[shared:], "rejected"),
    )


def _hh_row(number: int, obj: Any) -> tuple[PromptRecord, str, str]:
    """The shared dialogue before the answers, and the chosen and rejected answers, such that
    ``hh_transcript(prompt, answer)`` is the row's transcript byte for byte."""
    if not isinstance(obj, dict):
        raise ImportFileError(number, "each line must be an object with 'chosen' and 'rejected'")
    chosen = _hh_turns(number, obj.get("chosen"), "chosen")
    rejected = _hh_turns(number, obj.get("rejected"), "rejected")
    prompt, chosen_answer, rejected_answer = _split_dialogues(number, chosen, rejected, "Human:")
    record = PromptRecord(text=render_messages(prompt), messages=prompt, line=number)
    return record, chosen_answer, rejected_answer


def _hh_rows(text: str, max_records: int) -> list[tuple[PromptRecord, str, str]]:
    return [_hh_row(number, _json_line(number, line)) for number, line in _lines(text, max_records)]


# --- entry points ------------------------------------------------------------------------------


def parse_prompts(
    data: Source,
    *,
    format: str,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[PromptRecord]:
    """Every prompt of a JSONL, CSV or HH-RLHF file, in file order, duplicates included.

    Raises :class:`ImportFileError` for the first bad line, or for a file over
    ``max_records`` records or ``max_bytes`` bytes once decompressed.
    """
    text = _decode(data, max_bytes)
    if format == "jsonl":
        return _jsonl_prompts(text, max_records)
    if format == "csv":
        return _csv_prompts(text, max_records)
    if format == "hh":
        return [prompt for prompt, _, _ in _hh_rows(text, max_records)]
    raise ImportFileError(None, f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def parse_imported_completions(
    data: Source,
    *,
    format: str,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[ImportedGroup]:
    """Prompts with completions someone already has, in file order, duplicates included.

    JSONL lines are ``{"prompt": str | messages, "completions": [str, ...], "model": str}``
    (model optional); HH-RLHF rows give two completions each, chosen then rejected.
    """
    text = _decode(data, max_bytes)
    if format == "hh":
        return [
            ImportedGroup(prompt=prompt, completions=[chosen, rejected], model_name="")
            for prompt, chosen, rejected in _hh_rows(text, max_records)
        ]
    if format != "jsonl":
        raise ImportFileError(None, f"completions import from jsonl or hh, not {format!r}")
    groups: list[ImportedGroup] = []
    for number, line in _lines(text, max_records):
        obj = _json_line(number, line)
        if not isinstance(obj, dict):
            raise ImportFileError(number, "each line must be a JSON object")
        prompt = _prompt_record(number, obj.get("prompt"))
        completions = obj.get("completions")
        if completions is None:
            raise ImportFileError(number, "'completions' is missing")
        if not isinstance(completions, list) or not completions:
            raise ImportFileError(number, "'completions' must be a non-empty list of strings")
        for index, completion in enumerate(completions):
            if not isinstance(completion, str) or not completion.strip():
                raise ImportFileError(number, f"completions[{index}] must be a non-empty string")
            _checked(number, completion, f"completions[{index}]")
        model = obj.get("model")
        if model is not None and not isinstance(model, str):
            raise ImportFileError(number, "'model' must be a string")
        groups.append(
            ImportedGroup(
                prompt=prompt,
                completions=list(completions),
                model_name=_checked(number, model or "", "model"),
            )
        )
    return groups


@dataclass(frozen=True)
class PreferenceRecord:
    """One labeled pair from an existing preference dataset."""

    prompt: PromptRecord
    chosen: str
    rejected: str
    margin: float | None = None


def _trl_answer(number: int, value: Any, field: str) -> str:
    """An explicit-prompt chosen/rejected value: a string, or a list of one assistant
    message."""
    if isinstance(value, str):
        if not value.strip():
            raise ImportFileError(number, f"{field!r} is empty")
        return _checked(number, value, field)
    if isinstance(value, list):
        messages = _messages(number, value, field)
        if messages[-1]["role"] != "assistant" or len(messages) != 1:
            raise ImportFileError(
                number,
                f"{field!r} must hold the assistant's answer only (explicit-prompt format); "
                "put the dialogue in 'prompt', or leave 'prompt' out and give the whole "
                "dialogue in 'chosen' and 'rejected' (implicit-prompt format)",
            )
        return messages[-1]["content"]
    raise ImportFileError(number, f"{field!r} must be a string or a list of messages")


def _is_conversation(value: Any) -> bool:
    """TRL's test (``trl.data_utils.is_conversational``): a list whose first item is a
    message with a role."""
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], dict)
        and ("role" in value[0])
    )


def _trl_implicit_strings(number: int, chosen: Any, rejected: Any) -> tuple[PromptRecord, str, str]:
    """Standard implicit prompt: the longest common leading text is the prompt, less a final
    space, which stays with the answers (as ``trl.data_utils.extract_prompt`` splits it)."""
    for field, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise ImportFileError(
                number,
                f"{field!r} must be a string like the other answer, or both lists of messages",
            )
        _checked(number, value, field)
    if chosen == rejected:
        raise ImportFileError(number, "'chosen' and 'rejected' are the same text")
    shared = len(commonprefix([chosen, rejected]))
    if shared and chosen[shared - 1] == " ":
        shared -= 1
    prompt = chosen[:shared]
    if not prompt.strip():
        raise ImportFileError(
            number, "'chosen' and 'rejected' share no leading text to use as the prompt"
        )
    for field, answer in (("chosen", chosen[shared:]), ("rejected", rejected[shared:])):
        if not answer.strip():
            raise ImportFileError(number, f"{field!r} has no answer after the shared prompt")
    record = PromptRecord(text=prompt, messages=None, line=number)
    return record, chosen[shared:], rejected[shared:]


def _trl_implicit_messages(
    number: int, chosen: Any, rejected: Any
) -> tuple[PromptRecord, str, str]:
    """Conversational implicit prompt: the longest common leading turns (ending with a user
    turn) are the prompt; each side's answer is what follows (see :func:`_split_dialogues`)."""
    for field, value in (("chosen", chosen), ("rejected", rejected)):
        if not _is_conversation(value):
            raise ImportFileError(
                number,
                f"{field!r} must be a list of messages like the other answer, or both strings",
            )
    prompt, chosen_answer, rejected_answer = _split_dialogues(
        number, _messages(number, chosen, "chosen"), _messages(number, rejected, "rejected"), "user"
    )
    record = PromptRecord(text=render_messages(prompt), messages=prompt, line=number)
    return record, chosen_answer, rejected_answer


def _trl_row(number: int, obj: Any) -> PreferenceRecord:
    """One TRL preference row, explicit or implicit prompt.

    Explicit when ``prompt`` is given. The one exception is TRL's own: datasets that keep a
    redundant string ``prompt`` beside whole dialogues in ``chosen`` and ``rejected``, which
    ``trl.data_utils.maybe_extract_prompt`` treats as implicit; so does this (the string is
    ignored) when ``chosen`` is a dialogue rather than a lone assistant answer.
    """
    if not isinstance(obj, dict):
        raise ImportFileError(number, "each line must be a JSON object")
    for key in ("chosen", "rejected"):
        if key not in obj:
            raise ImportFileError(number, f"{key!r} is missing")
    margin = obj.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int | float)):
        raise ImportFileError(number, "'margin' must be a number")
    chosen, rejected = obj["chosen"], obj["rejected"]
    conversational = _is_conversation(chosen)
    dialogue = conversational and chosen[0].get("role") != "assistant"
    given = obj.get("prompt")
    if given is not None and not (isinstance(given, str) and dialogue):
        prompt = _prompt_record(number, given)
        chosen_text = _trl_answer(number, chosen, "chosen")
        rejected_text = _trl_answer(number, rejected, "rejected")
    elif conversational:
        prompt, chosen_text, rejected_text = _trl_implicit_messages(number, chosen, rejected)
    else:
        prompt, chosen_text, rejected_text = _trl_implicit_strings(number, chosen, rejected)
    return PreferenceRecord(
        prompt=prompt,
        chosen=chosen_text,
        rejected=rejected_text,
        margin=float(margin) if margin is not None else None,
    )


def parse_preferences(
    data: bytes | str | IO[bytes] | IO[str], *, format: str, max_records: int = DEFAULT_MAX_RECORDS
) -> list[PreferenceRecord]:
    """Labeled pairs from Anthropic HH-RLHF or TRL preference JSONL.

    TRL rows come in both of TRL's preference forms, each as strings or as message lists:
    explicit prompt (``prompt``, ``chosen``, ``rejected``) and implicit prompt (``chosen``
    and ``rejected`` only, each holding the whole text or dialogue; the shared beginning
    becomes the prompt). Raises :class:`ImportFileError` naming the first bad line.
    """
    text = _decode(data)
    if format == "hh":
        return [
            PreferenceRecord(prompt=prompt, chosen=chosen, rejected=rejected)
            for prompt, chosen, rejected in _hh_rows(text, max_records)
        ]
    if format != "trl":
        raise ImportFileError(None, f"preferences import from hh or trl, not {format!r}")
    return [
        _trl_row(number, _json_line(number, line)) for number, line in _lines(text, max_records)
    ]
