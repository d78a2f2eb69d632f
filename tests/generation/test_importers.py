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
    parse_imported_completions,
    parse_prompts,
    sniff_format,
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


def test_it_replaces_nul_characters_that_postgres_cannot_store() -> None:
    [record] = parse_prompts('{"prompt": "a\\u0000b"}', format="jsonl")
    assert record.text == "a\ufffdb"


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


def test_it_hashes_plain_prompts_after_normalising_whitespace_and_unicode() -> None:
    nfc = unicodedata.normalize("NFC", "Café  au lait")
    nfd = unicodedata.normalize("NFD", "Café au lait")
    assert nfc != nfd
    texts = ["Hello  world", " Hello world\n", "Hello\tworld", "hello world", nfc, nfd]
    records = parse_prompts(jsonl(*texts), format="jsonl")
    kept, skipped = dedupe(records)
    assert [r.line for r in kept] == [1, 4, 5]
    assert skipped == 3
    # The hash is stored beside every prompt; pin the scheme so a change is deliberate.
    assert records[0].content_hash == hashlib.sha256(b"Hello world").hexdigest()


def test_it_hashes_conversations_equal_when_normalised() -> None:
    def conversation(user: str, answer: str, role: str = "assistant") -> object:
        return {"prompt": [{"role": "user", "content": user}, {"role": role, "content": answer}]}

    records = parse_prompts(
        jsonl(
            conversation("Café?", "Yes  please"),
            conversation(unicodedata.normalize("NFD", " Café? "), "Yes\nplease"),
            conversation("Café?", "Yes please", role="system"),
            conversation("Café?", "yes please"),
            "User: Café?\n\nAssistant: Yes please",
        ),
        format="jsonl",
    )
    hashes = [r.content_hash for r in records]
    assert hashes[0] == hashes[1]
    assert len(set(hashes)) == 4
    assert dedupe(records)[1] == 1


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
