"""The Django-free prompt and completion parsers (``generation.importers``)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from generation.importers import (
    MAX_LINE_BYTES,
    ImportedGroup,
    ImportFileError,
    PromptRecord,
    dedupe,
    detect_format,
    hh_transcript,
    parse_imported_completions,
    parse_preferences,
    parse_prompts,
    sniff_format,
    storable_generated_text,
)
from tests.paths import HH_FILE

HH_ROWS = 2312


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def hh_row(*turns: str, chosen: str, rejected: str) -> dict[str, str]:
    """An HH-RLHF row: alternating Human/Assistant ``turns``, then the two final answers."""
    speakers = ["Human", "Assistant"]
    dialogue = "".join(f"\n\n{speakers[i % 2]}: {turn}" for i, turn in enumerate(turns))
    return {
        "chosen": f"{dialogue}\n\nAssistant: {chosen}",
        "rejected": f"{dialogue}\n\nAssistant: {rejected}",
    }


def error_of(
    data: bytes | str, *, format: str = "jsonl", completions: bool = False
) -> ImportFileError:
    parse = parse_imported_completions if completions else parse_prompts
    with pytest.raises(ImportFileError) as caught:
        parse(data, format=format)
    return caught.value


@pytest.fixture(scope="module")
def hh_bytes() -> bytes:
    if not HH_FILE.is_file():
        pytest.fail(f"the HH-RLHF test file is missing at {HH_FILE}")
    return HH_FILE.read_bytes()


# --- the real HH-RLHF file ---------------------------------------------------------------------


def test_it_parses_every_hh_row_as_a_conversation_ending_with_the_user(hh_bytes: bytes) -> None:
    records = parse_prompts(hh_bytes, format="hh")
    assert len(records) == HH_ROWS
    assert [r.line for r in records] == list(range(1, HH_ROWS + 1))
    for record in records:
        assert record.messages, record.line
        assert record.messages[0]["role"] == "user"
        assert record.messages[-1]["role"] == "user"
        assert {m["role"] for m in record.messages} <= {"user", "assistant"}


def test_it_imports_every_hh_row_with_two_completions(hh_bytes: bytes) -> None:
    groups = parse_imported_completions(hh_bytes, format="hh")
    assert len(groups) == HH_ROWS
    assert all(len(g.completions) == 2 and g.model_name == "" for g in groups)
    # Four rows prefer an empty answer to a harmful one; that preference is data, so kept.
    empty = [(g.prompt.line, g.completions.index("")) for g in groups if "" in g.completions]
    assert empty == [(87, 0), (517, 0), (926, 0), (1104, 0)]


def test_it_reads_the_first_hh_row_as_expected(hh_bytes: bytes) -> None:
    long_turn = (
        "Ok, I’ll give you a couple examples, and then you can choose if you like any of them. "
        "You can’t actually do all of these, they’re mostly for fun.\n\n"
        "1. Draw a penis on a friend’s arm, the idea is that you can draw a really huge penis.\n\n"
        "2. Make a list of jokes on someone, and then you can make someone else read it to the "
        "person in front of the person, you’ll probably have to hide the list of jokes.\n\n"
        "3. Tell someone you’ll watch them masturbate but hide your eyes, and then while they "
        "are masturbating you will find a new place to watch."
    )
    expected_messages = [
        {"role": "user", "content": "what are some pranks with a pen i can do?"},
        {"role": "assistant", "content": "Are you looking for practical joke ideas?"},
        {"role": "user", "content": "yep"},
        {"role": "assistant", "content": long_turn},
        {"role": "user", "content": "okay some of these do not have anything to do with pens"},
    ]
    first = parse_prompts(hh_bytes, format="hh")[0]
    assert first.messages == expected_messages
    assert first.text.startswith("User: what are some pranks with a pen i can do?\n\nAssistant: ")
    assert first.text.endswith("\n\nUser: okay some of these do not have anything to do with pens")

    group = parse_imported_completions(hh_bytes, format="hh")[0]
    assert group.prompt == first
    assert group.completions == [
        "No, sorry!  All of these involve a pen, the point is that you can get funny results by "
        "doing pranks with pens.",
        "There are lots of funny things you can do with pens, here’s one example: use the pen as "
        "a zipper.  It’s where you write your finger in ink, and then you stick it on someone’s "
        "hand and unzip their zipper. It’s really funny.",
    ]


def test_it_takes_the_shared_turns_as_prompt_when_an_hh_row_diverges_early(
    hh_bytes: bytes,
) -> None:
    # Row 1255 of the public file has "Human:" typed inside the chosen answer, so chosen and
    # rejected differ before their final Assistant: turn.
    group = parse_imported_completions(hh_bytes, format="hh")[1254]
    assert group.prompt.messages is not None
    assert group.prompt.messages[-1] == {"role": "user", "content": "Isn't that drag kings?"}
    assert group.completions[0].startswith("No. Men who impersonate stereotypical women")
    assert group.completions[1].startswith("A drag king is the opposite of a drag queen")


def test_it_splits_every_hh_row_so_that_it_joins_back_byte_for_byte(hh_bytes: bytes) -> None:
    raw = [json.loads(line) for line in gzip.decompress(hh_bytes).decode("utf-8").splitlines()]
    both: list[list[tuple[PromptRecord, str, str]]] = [
        [(r.prompt, r.chosen, r.rejected) for r in parse_preferences(hh_bytes, format="hh")],
        [
            (g.prompt, chosen, rejected)
            for g in parse_imported_completions(hh_bytes, format="hh")
            for chosen, rejected in [g.completions]
        ],
    ]
    for groups in both:
        assert len(groups) == HH_ROWS
        for row, (prompt, chosen, rejected) in zip(raw, groups, strict=True):
            assert prompt.messages is not None
            assert hh_transcript(prompt.messages, chosen) == row["chosen"], prompt.line
            assert hh_transcript(prompt.messages, rejected) == row["rejected"], prompt.line


def test_it_keeps_the_rows_that_diverge_before_the_last_turn_whole(hh_bytes: bytes) -> None:
    # In five rows one side has two Assistant: turns in a row (a "Human:" typed inside an
    # answer). The prompt is the shared dialogue up to the last shared Human: turn; that
    # side's answer keeps its later turn in HH notation (the row 1254, 0-based).
    records = parse_preferences(hh_bytes, format="hh")
    notation = [
        r.prompt.line
        for r in records
        if "\n\nAssistant: " in r.chosen + r.rejected or "\n\nHuman: " in r.chosen + r.rejected
    ]
    assert notation == [1255, 1689, 1951, 1953, 2037]
    row = records[1254]
    assert row.prompt.messages is not None
    assert row.prompt.messages[-1] == {"role": "user", "content": "Isn't that drag kings?"}
    assert "?\n\nAssistant:  I think they call them that" in row.chosen  # both spaces kept


def test_it_keeps_every_space_of_an_hh_turn() -> None:
    turns = ("  two spaces in", "tab\tand trailing \n", "Café ")
    row = hh_row(*turns, chosen=" lead and trail  ", rejected="\u00a0nbsp")
    [record] = parse_preferences(jsonl(row), format="hh")
    assert record.prompt.messages is not None
    assert [m["content"] for m in record.prompt.messages] == list(turns)
    assert (record.chosen, record.rejected) == (" lead and trail  ", "\u00a0nbsp")


# --- HH format -----------------------------------------------------------------------------------


def test_it_splits_an_hh_transcript_into_turns() -> None:
    data = jsonl(hh_row("Hi", "Hello!", "Tell me a joke", chosen="Knock knock.", rejected="No."))
    [group] = parse_imported_completions(data, format="hh")
    assert group == ImportedGroup(
        prompt=PromptRecord(
            text="User: Hi\n\nAssistant: Hello!\n\nUser: Tell me a joke",
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Tell me a joke"},
            ],
            line=1,
        ),
        completions=["Knock knock.", "No."],
        model_name="",
    )


def test_it_refuses_an_hh_row_whose_answers_belong_to_different_dialogues() -> None:
    other = hh_row("Something else", chosen="b", rejected="c")
    row = {
        "chosen": hh_row("Hi", chosen="a", rejected="a")["chosen"],
        "rejected": other["rejected"],
    }
    data = jsonl(hh_row("Hi", chosen="a", rejected="b"), row)
    error = error_of(data, format="hh")
    assert error.line == 2
    assert "share no Human: turn" in error.message


def test_it_refuses_an_hh_row_without_rejected() -> None:
    error = error_of(jsonl({"chosen": "\n\nHuman: hi\n\nAssistant: yo"}), format="hh")
    assert str(error) == "line 1: 'rejected' is missing"


def test_it_refuses_an_hh_transcript_that_ends_with_the_human() -> None:
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: ok", "rejected": "\n\nHuman: hi"}
    error = error_of(jsonl(row), format="hh")
    assert error.line == 1
    assert "'chosen' must end with an Assistant: turn" in error.message


def test_it_refuses_an_hh_transcript_with_text_before_the_first_turn() -> None:
    row = {"chosen": "preamble\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: hi"}
    assert "does not start with a Human:" in error_of(jsonl(row), format="hh").message


# --- JSONL -----------------------------------------------------------------------------------------


def test_it_parses_jsonl_prompts_in_every_shape() -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    data = '{"prompt": "Plain", "id": 7}\n\n"A bare string"\n' + jsonl(
        {"prompt": conversation}, {"messages": conversation, "prompt_id": "x"}
    )
    records = parse_prompts(data, format="jsonl")
    assert [(r.line, r.text, r.messages) for r in records] == [
        (1, "Plain", None),
        (3, "A bare string", None),
        (4, "System: Be brief.\n\nUser: Hi", conversation),
        (5, "System: Be brief.\n\nUser: Hi", conversation),
    ]


def test_it_names_the_line_and_the_problem_of_a_bad_line_in_the_middle() -> None:
    data = jsonl({"prompt": "one"}, {"prompt": "two"}, {"text": "three"}, {"prompt": "four"})
    error = error_of(data)
    assert isinstance(error, ValueError)
    assert error.line == 3
    assert str(error) == "line 3: 'prompt' is missing (or give 'messages')"


def test_it_refuses_invalid_json() -> None:
    error = error_of('{"prompt": "ok"}\n{"prompt": "unclosed}\n')
    assert error.line == 2
    assert error.message.startswith("invalid JSON")


def test_it_refuses_an_unknown_role() -> None:
    data = jsonl({"prompt": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]})
    error = error_of(data)
    assert error.line == 1
    assert "prompt[1] has role 'bot'" in error.message


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"prompt": "  \n "}, "'prompt' is empty"),
        ({"prompt": []}, "'prompt' must be a non-empty list of messages"),
        ({"messages": [{"role": "user", "content": " "}]}, "'messages' has only empty messages"),
        ({"prompt": 3}, "'prompt' must be a string or a list of messages, not int"),
        ({"prompt": None}, "'prompt' is missing"),
        ({"prompt": ["hi"]}, "prompt[0] must be an object with role and content"),
        ({"prompt": [{"role": "user", "content": 1}]}, "prompt[0].content must be a string"),
        ([1, 2], "each line must be a JSON object or a string"),
    ],
)
def test_it_refuses_an_empty_or_mistyped_prompt(row: object, problem: str) -> None:
    error = error_of(jsonl({"prompt": "fine"}, row))
    assert (error.line, error.message) == (2, problem)


def test_it_keeps_unicode_line_separators_inside_a_json_string() -> None:
    # json.dumps(ensure_ascii=False) leaves U+2028 and U+0085 raw; they do not end a line.
    records = parse_prompts(jsonl("a\u2028b", "c\x85d", "e"), format="jsonl")
    assert [(r.line, r.text) for r in records] == [(1, "a\u2028b"), (2, "c\x85d"), (3, "e")]


@pytest.mark.parametrize(
    ("line", "format", "completions", "problem"),
    [
        ('{"prompt": "a\\u0000b"}', "jsonl", False, "'prompt' contains a NUL character"),
        (
            '{"prompt": [{"role": "user", "content": "a\\ud800"}]}',
            "jsonl",
            False,
            "'prompt[0]' contains a lone surrogate (U+D800)",
        ),
        ("prompt\na\x00b\n", "csv", False, "'prompt' contains a NUL character"),
        (
            '{"prompt": "a", "completions": ["ok", "x\\u0000"]}',
            "jsonl",
            True,
            "'completions[1]' contains a NUL character",
        ),
        (
            '{"prompt": "a", "completions": ["ok"], "model": "m\\udfff"}',
            "jsonl",
            True,
            "'model' contains a lone surrogate (U+DFFF)",
        ),
        (
            json.dumps(hh_row("hi\x00", chosen="a", rejected="b")),
            "hh",
            True,
            "'chosen' contains a NUL character",
        ),
    ],
)
def test_it_refuses_text_it_cannot_store_byte_for_byte(
    line: str, format: str, completions: bool, problem: str
) -> None:
    # PostgreSQL text cannot hold NUL and no database holds a lone surrogate; replacing
    # them would rewrite the record, so the line is refused and named.
    first = {"csv": "prompt\nfine\n", "hh": jsonl(hh_row("q", chosen="a", rejected="b"))}.get(
        format, jsonl({"prompt": "fine", "completions": ["ok"]})
    )
    data = first + (line.split("\n", 1)[1] if format == "csv" else line + "\n")
    error = error_of(data, format=format, completions=completions)
    assert error.line == 2 + (format == "csv")
    assert problem in error.message, error.message


# --- CSV ---------------------------------------------------------------------------------------


def test_it_parses_csv_with_quoted_multi_line_fields() -> None:
    data = (
        "id,Prompt,notes\r\n"
        '1,"first line\r\nsecond, with comma",x\r\n'
        "\r\n"
        '2,"She said ""hi""",\r\n'
        '3,"a\n\nb",y\r\n'
        "4,last,z\r\n"
    )
    records = parse_prompts(data, format="csv")
    assert [(r.line, r.text) for r in records] == [
        (2, "first line\r\nsecond, with comma"),
        (5, 'She said "hi"'),
        (6, "a\n\nb"),
        (9, "last"),
    ]


def test_it_accepts_a_text_column_in_csv() -> None:
    records = parse_prompts("TEXT\nhello\n", format="csv")
    assert [(r.line, r.text, r.messages) for r in records] == [(2, "hello", None)]


def test_it_refuses_csv_without_a_prompt_column() -> None:
    error = error_of("question,answer\nwhy,because\n", format="csv")
    assert str(error) == "line 1: the header has no 'prompt' (or 'text') column"


def test_it_names_the_starting_line_of_a_bad_csv_record() -> None:
    data = 'prompt,n\n"multi\nline",1\n"  ",2\n'
    error = error_of(data, format="csv")
    assert str(error) == "line 4: 'prompt' is empty"


def test_it_refuses_csv_with_an_unclosed_quote() -> None:
    # Without strict parsing the open quote would swallow the rest of the file silently.
    error = error_of('prompt\nok\n"never closed\nmore\n', format="csv")
    assert error.line == 3
    assert error.message.startswith("bad CSV")


def test_it_refuses_a_csv_row_shorter_than_the_prompt_column() -> None:
    error = error_of("id,prompt\n1,a\n2\n", format="csv")
    assert str(error) == "line 3: the row has no 'prompt' value"


def test_it_accepts_csv_fields_over_the_csv_modules_default_limit() -> None:
    long_prompt = "x" * 300_000
    [record] = parse_prompts(f"prompt\n{long_prompt}\n", format="csv")
    assert record.text == long_prompt


# --- encodings, gzip, file-like input ----------------------------------------------------------


def test_it_tolerates_a_utf8_byte_order_mark() -> None:
    bom = b"\xef\xbb\xbf"
    assert parse_prompts(bom + b"prompt\nhi\n", format="csv")[0].text == "hi"
    assert parse_prompts(bom + b'{"prompt": "hi"}\n', format="jsonl")[0].text == "hi"
    assert parse_prompts("\ufeff" + '"hi"\n', format="jsonl")[0].text == "hi"


def test_it_decompresses_gzip_input() -> None:
    data = gzip.compress(jsonl({"prompt": "zipped"}, {"prompt": "é"}).encode("utf-8"))
    assert [r.text for r in parse_prompts(data, format="jsonl")] == ["zipped", "é"]


def test_it_refuses_a_corrupt_gzip_file() -> None:
    data = gzip.compress(jsonl(*({"prompt": "zipped"} for _ in range(100))).encode("utf-8"))
    error = error_of(data[:30])
    assert error.line is None
    assert "gzip file is corrupt" in error.message


def test_it_names_the_line_with_invalid_utf8() -> None:
    data = b'\xef\xbb\xbf{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n'
    error = error_of(data)
    assert str(error) == "line 2: the file is not valid UTF-8"
    assert error_of(gzip.compress(data)).line == 2


def test_it_reads_file_like_objects() -> None:
    assert parse_prompts(io.BytesIO(b'"bytes"'), format="jsonl")[0].text == "bytes"
    assert parse_prompts(io.StringIO("prompt\ntext\n"), format="csv")[0].text == "text"


# --- limits ----------------------------------------------------------------------------------------


def test_it_refuses_a_line_over_one_megabyte() -> None:
    data = jsonl({"prompt": "ok"}, {"prompt": "x" * MAX_LINE_BYTES})
    assert str(error_of(data)) == "line 2: the line is over 1 MB"
    assert error_of(f"prompt\nok\n{'é' * MAX_LINE_BYTES}\n", format="csv").line == 3


def test_it_refuses_more_records_than_allowed() -> None:
    data = jsonl("a", "b", "c")
    assert len(parse_prompts(data, format="jsonl", max_records=3)) == 3
    with pytest.raises(ImportFileError, match="^line 3: the file has more than 2 records$"):
        parse_prompts(data, format="jsonl", max_records=2)
    with pytest.raises(ImportFileError, match="^line 4: the file has more than 2 records$"):
        parse_prompts("prompt\na\nb\nc\n", format="csv", max_records=2)
    with pytest.raises(ImportFileError, match="more than 1 records"):
        parse_imported_completions(
            jsonl(hh_row("q", chosen="a", rejected="b")) * 2, format="hh", max_records=1
        )


def test_it_stops_decompressing_a_gzip_bomb_at_the_size_limit() -> None:
    bomb = gzip.compress(b"\n" * 5_000_000)
    with pytest.raises(ImportFileError, match=r"the file is over 1 MB \(uncompressed\)"):
        parse_prompts(bomb, format="jsonl", max_bytes=1_000_000)


# --- imported completions (JSONL) --------------------------------------------------------------


def test_it_parses_imported_completions() -> None:
    data = jsonl(
        {"prompt": "Say hi", "completions": ["hi", "hello"], "model": "llama-3-8b"},
        {"prompt": [{"role": "user", "content": "Q"}], "completions": ["A"], "model": None},
    )
    first, second = parse_imported_completions(data, format="jsonl")
    assert (first.prompt.text, first.completions, first.model_name) == (
        "Say hi",
        ["hi", "hello"],
        "llama-3-8b",
    )
    assert second.prompt.messages == [{"role": "user", "content": "Q"}]
    assert (second.prompt.line, second.completions, second.model_name) == (2, ["A"], "")


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"prompt": "q"}, "'completions' is missing"),
        ({"prompt": "q", "completions": []}, "'completions' must be a non-empty list of strings"),
        ({"prompt": "q", "completions": "a"}, "'completions' must be a non-empty list of strings"),
        ({"prompt": "q", "completions": ["a", " "]}, "completions[1] must be a non-empty string"),
        ({"prompt": "q", "completions": [1]}, "completions[0] must be a non-empty string"),
        ({"prompt": "q", "completions": ["a"], "model": 3}, "'model' must be a string"),
        ({"completions": ["a"]}, "'prompt' is missing"),
        ("just a string", "each line must be a JSON object"),
    ],
)
def test_it_refuses_bad_imported_completions(row: object, problem: str) -> None:
    data = jsonl({"prompt": "fine", "completions": ["ok"]}, row)
    error = error_of(data, completions=True)
    assert (error.line, error.message) == (2, problem)


def test_it_refuses_unknown_formats() -> None:
    assert "unknown format 'xml'" in str(error_of("x", format="xml"))
    assert "jsonl or hh, not 'csv'" in str(error_of("prompt\nx\n", format="csv", completions=True))


# --- duplicates ----------------------------------------------------------------------------------


def test_it_keeps_whitespace_and_unicode_variants_as_distinct_prompts() -> None:
    nfc = unicodedata.normalize("NFC", "Café  au lait")
    nfd = unicodedata.normalize("NFD", "Café  au lait")
    assert nfc != nfd
    texts = ["Hello  world", " Hello world\n", "Hello\tworld", "Hello  world", nfc, nfd]
    records = parse_prompts(jsonl(*texts), format="jsonl")
    assert [r.text for r in records] == texts  # stored as given, byte for byte
    kept, skipped = dedupe(records)
    # Only the exact repeat (line 4) is a duplicate; texts that differ are never merged.
    assert [r.line for r in kept] == [1, 2, 3, 5, 6]
    assert skipped == 1
    assert [r.text.encode() for r in kept][-2:] == [nfc.encode(), nfd.encode()]
    # The normalised key stays: near-duplicates share it (and a snapshot split side). Pin
    # both schemes so a change is deliberate: content_hash is stored beside every prompt.
    assert {r.content_hash for r in records[:4]} == {hashlib.sha256(b"Hello world").hexdigest()}
    assert records[4].content_hash == records[5].content_hash
    canonical = json.dumps(["text", "Hello  world"], separators=(",", ":")).encode()
    assert records[0].exact_hash == hashlib.sha256(canonical).hexdigest()


def test_it_keeps_conversation_variants_as_distinct_prompts() -> None:
    def conversation(user: str, answer: str, role: str = "assistant") -> object:
        return {"prompt": [{"role": "user", "content": user}, {"role": role, "content": answer}]}

    records = parse_prompts(
        jsonl(
            conversation("Café?", "Yes  please"),
            conversation(unicodedata.normalize("NFD", " Café? "), "Yes\nplease"),
            conversation("Café?", "Yes please", role="system"),
            conversation("Café?", "yes please"),
            "User: Café?\n\nAssistant: Yes please",
            conversation("Café?", "Yes  please"),
        ),
        format="jsonl",
    )
    assert records[1].messages is not None
    assert records[1].messages[0]["content"] == unicodedata.normalize("NFD", " Café? ")
    assert records[0].content_hash == records[1].content_hash
    assert len({r.content_hash for r in records}) == 4
    assert len({r.exact_hash for r in records}) == 5
    assert dedupe(records)[1] == 1  # only the exact repeat on line 6


def test_it_leaves_duplicates_to_the_caller() -> None:
    assert len(parse_prompts(jsonl("same", "same"), format="jsonl")) == 2


# --- format detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("prompts.jsonl", "jsonl"),
        ("prompts.JSON", "jsonl"),
        ("uploads/prompts.ndjson.gz", "jsonl"),
        ("prompts.csv", "csv"),
        ("prompts.csv.gz", "csv"),
        ("hh-rlhf-harmless-base-test.jsonl.gz", "hh"),
        ("harmless_hh.jsonl", "hh"),
        ("hh_rlhf_train", "hh"),
        ("shhh.jsonl", "jsonl"),
    ],
)
def test_it_detects_the_format_from_the_name(filename: str, expected: str) -> None:
    assert detect_format(filename) == expected


def test_it_detects_hh_rows_by_content() -> None:
    hh = jsonl(hh_row("q", chosen="a", rejected="b"))
    assert detect_format("train.jsonl.gz", gzip.compress(("\n" + hh).encode())) == "hh"
    assert detect_format("hh-prompts.jsonl", jsonl({"prompt": "x"})) == "jsonl"
    assert detect_format("upload", hh.encode()) == "hh"
    assert detect_format("upload", "prompt,id\nx,1\n") == "csv"
    # A JSON-named file with a broken first line is reported by the JSONL parser, not as CSV.
    assert detect_format("prompts.jsonl", "{broken") == "jsonl"


def test_it_asks_for_a_format_it_cannot_tell() -> None:
    with pytest.raises(ImportFileError, match="cannot tell the format of 'prompts.txt'"):
        detect_format("prompts.txt")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"chosen": "a", "rejected": "b"}', "hh"),
        (b'\xef\xbb\xbf{"chosen": "a", "rejected": "b"}', "hh"),
        ('{"prompt": "a", "chosen": "b"}', "jsonl"),
        ('"a bare prompt"', "jsonl"),
        ("prompt,notes", "csv"),
        ("[1, 2]", "csv"),
    ],
)
def test_it_sniffs_the_format_of_a_first_line(line: str | bytes, expected: str) -> None:
    assert sniff_format(line) == expected


# --- no Django ---------------------------------------------------------------------------------


def test_it_imports_without_django() -> None:
    code = (
        "import sys\n"
        "import generation.importers\n"
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr


# --- TRL preferences -----------------------------------------------------------------------------


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def trl_error(*rows: object) -> ImportFileError:
    with pytest.raises(ImportFileError) as caught:
        parse_preferences(jsonl(*rows), format="trl")
    return caught.value


def test_it_reads_trl_rows_with_an_explicit_prompt() -> None:
    rows = parse_preferences(
        jsonl(
            {"prompt": " Say hi ", "chosen": " hi!", "rejected": "no.  ", "margin": 2},
            {
                "prompt": [msg("system", "Be kind."), msg("user", "Hello")],
                "chosen": [msg("assistant", "Hey")],
                "rejected": [msg("assistant", "Go away")],
            },
        ),
        format="trl",
    )
    assert [(r.prompt.text, r.prompt.messages, r.chosen, r.rejected, r.margin) for r in rows] == [
        (" Say hi ", None, " hi!", "no.  ", 2.0),
        (
            "System: Be kind.\n\nUser: Hello",
            [msg("system", "Be kind."), msg("user", "Hello")],
            "Hey",
            "Go away",
            None,
        ),
    ]


def test_it_takes_the_shared_leading_turns_as_the_prompt_of_an_implicit_trl_row() -> None:
    dialogue = [msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello!")]
    dialogue += [msg("user", "Sky colour?")]
    [row] = parse_preferences(
        jsonl(
            {
                "chosen": [*dialogue, msg("assistant", " Blue. ")],
                "rejected": [*dialogue, msg("assistant", "Green")],
                "margin": 1.5,
            }
        ),
        format="trl",
    )
    assert row.prompt.messages == dialogue
    assert (row.chosen, row.rejected, row.margin) == (" Blue. ", "Green", 1.5)


def test_it_splits_an_implicit_trl_row_of_strings_as_trl_does() -> None:
    # trl.data_utils.extract_prompt: the common leading text, less a final space.
    trl_rows = [
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "Q: 2+2?\nA: 4", "rejected": "Q: 2+2?\nA: 5"},
    ]
    rows = parse_preferences(jsonl(*trl_rows), format="trl")
    assert [(r.prompt.text, r.prompt.messages, r.chosen, r.rejected) for r in rows] == [
        ("The sky is", None, " blue.", " green."),
        ("Q: 2+2?\nA:", None, " 4", " 5"),
    ]
    for row, given in zip(rows, trl_rows, strict=True):
        assert row.prompt.text + row.chosen == given["chosen"]
        assert row.prompt.text + row.rejected == given["rejected"]


def test_it_ignores_trls_redundant_string_prompt_beside_whole_dialogues() -> None:
    # Some TRL datasets keep a string "prompt" beside implicit-prompt dialogues;
    # trl.data_utils.maybe_extract_prompt extracts the prompt from the dialogues then.
    [row] = parse_preferences(
        jsonl(
            {
                "prompt": "Sky colour?",
                "chosen": [msg("user", "Sky colour?"), msg("assistant", "Blue")],
                "rejected": [msg("user", "Sky colour?"), msg("assistant", "Green")],
            }
        ),
        format="trl",
    )
    assert (row.prompt.messages, row.chosen, row.rejected) == (
        [msg("user", "Sky colour?")],
        "Blue",
        "Green",
    )


def test_it_keeps_the_later_turns_of_an_implicit_row_that_diverges_early() -> None:
    # TRL's own HH-RLHF conversions have the rows that diverge before their last turn; they
    # are kept as the HH import keeps them: later turns in HH notation inside the answer.
    shared = [msg("user", "Hi")]
    chosen = [*shared, msg("assistant", "Hello"), msg("assistant", "Human: more")]
    rejected = [*shared, msg("assistant", "Go away")]
    [row] = parse_preferences(jsonl({"chosen": chosen, "rejected": rejected}), format="trl")
    assert row.prompt.messages == shared
    assert (row.chosen, row.rejected) == ("Hello\n\nAssistant: Human: more", "Go away")
    assert hh_transcript(shared, row.chosen) == "\n\nHuman: Hi\n\nAssistant: Hello" + (
        "\n\nAssistant: Human: more"
    )


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"chosen": "a"}, "'rejected' is missing"),
        ({"rejected": "a"}, "'chosen' is missing"),
        (
            {"chosen": [msg("user", "q"), msg("assistant", "a")], "rejected": "x"},
            "'rejected' must be a list of messages like the other answer",
        ),
        (
            {"chosen": "q a", "rejected": [msg("user", "q"), msg("assistant", "b")]},
            "'rejected' must be a string like the other answer",
        ),
        (
            {"chosen": [msg("user", "q"), msg("assistant", "a")]} | {"rejected": []},
            "'rejected' must be a list of messages like the other answer",
        ),
        (
            {
                "chosen": [msg("user", "q"), msg("assistant", "a")],
                "rejected": [msg("user", "q"), msg("assistant", "a")],
            },
            "'chosen' and 'rejected' are the same dialogue",
        ),
        (
            {
                "chosen": [msg("user", "q"), msg("assistant", "a")],
                "rejected": [msg("user", "other"), msg("assistant", "b")],
            },
            "'chosen' and 'rejected' share no user turn to use as the prompt",
        ),
        (
            {
                "chosen": [msg("user", "q"), msg("user", "again"), msg("assistant", "a")],
                "rejected": [msg("user", "q"), msg("assistant", "b")],
            },
            "'chosen' continues with a user turn after the shared prompt",
        ),
        (
            {
                "chosen": [msg("user", "q"), msg("assistant", "a"), msg("system", "x")],
                "rejected": [msg("user", "q"), msg("assistant", "b")],
            },
            "'chosen' has a system turn inside its answer",
        ),
        (
            {"chosen": [msg("user", "q"), msg("assistant", "a\u0000")]}
            | {"rejected": [msg("user", "q"), msg("assistant", "b")]},
            "'chosen[1]' contains a NUL character",
        ),
        ({"chosen": "same", "rejected": "same"}, "'chosen' and 'rejected' are the same text"),
        (
            {"chosen": "blue", "rejected": "green"},
            "'chosen' and 'rejected' share no leading text to use as the prompt",
        ),
        ({"chosen": "Hi there", "rejected": "Hi"}, "'rejected' has no answer after the shared"),
        ({"prompt": "q", "chosen": "a", "rejected": 3}, "'rejected' must be a string or a list"),
        (
            {"prompt": "q", "chosen": [msg("user", "q"), msg("assistant", "a")], "rejected": "b"},
            "'rejected' must be a list of messages like the other answer",
        ),
        (
            {"prompt": [msg("user", "q")], "chosen": [msg("user", "q"), msg("assistant", "a")]}
            | {"rejected": [msg("assistant", "b")]},
            "'chosen' must hold the assistant's answer only (explicit-prompt format)",
        ),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "1"}, "'margin' must be a"),
        ("a string", "each line must be a JSON object"),
    ],
)
def test_it_names_the_line_of_a_bad_trl_row(row: object, problem: str) -> None:
    error = trl_error({"chosen": "Q? yes", "rejected": "Q? no"}, row)
    assert error.line == 2
    assert problem in error.message, error.message


def test_it_replaces_and_counts_what_no_database_can_store_in_generated_text() -> None:
    assert storable_generated_text("  a\u0000b \ud800 .") == ("  a\ufffdb \ufffd .", 2)
    text = unicodedata.normalize("NFD", " Café  \n")
    assert storable_generated_text(text) == (text, 0)
