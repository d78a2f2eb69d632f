from __future__ import annotations

import gzip
import json
import unicodedata
from collections import defaultdict

import pytest

from generation import importers, services
from generation.models import Completion, GenerationJob, Prompt, PromptSet
from tests.generation.factories import prompt_set_with_prompts
from tests.paths import HH_FILE
from tests.queries import first_row

HH_ROWS = 2312


@pytest.fixture(scope="module")
def hh_bytes() -> bytes:
    if not HH_FILE.is_file():
        pytest.fail(f"the HH-RLHF test file is missing at {HH_FILE}")
    return HH_FILE.read_bytes()


def test_it_imports_prompts_and_counts_exact_duplicates(db) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(0)
    data = '{"prompt": "Hello  world"}\n{"prompt": " Hello world\\n"}\n{"prompt": "Hello  world"}\n'
    result = services.prompt_set_import(prompt_set=prompt_set, data=data, format="jsonl")
    assert (result.created, result.skipped_duplicates) == (2, 1)
    again = services.prompt_set_import(
        prompt_set=prompt_set,
        data='{"prompt": " Hello world\\n"}\n{"prompt": "New"}',
        format="jsonl",
    )
    assert (again.created, again.skipped_duplicates) == (1, 1)
    assert list(prompt_set.prompts.values_list("position", "text")) == [
        (0, "Hello  world"),
        (1, " Hello world\n"),
        (2, "New"),
    ]


def test_it_keeps_prompts_that_differ_only_in_whitespace_or_unicode_form(db) -> None:  # type: ignore[no-untyped-def]
    nfc = unicodedata.normalize("NFC", "Café")
    nfd = unicodedata.normalize("NFD", "Café")
    texts = [nfc, nfd, "Café ", " Café", "Caf\u00e9\n\n", "Café\t"]
    prompt_set = prompt_set_with_prompts(0)
    data = "".join(json.dumps({"prompt": t}) + "\n" for t in texts)
    result = services.prompt_set_import(prompt_set=prompt_set, data=data, format="jsonl")
    assert (result.created, result.skipped_duplicates) == (len(texts), 0)
    stored = [p.text for p in Prompt.objects.filter(prompt_set=prompt_set).order_by("position")]
    assert [t.encode("utf-8") for t in stored] == [t.encode("utf-8") for t in texts]
    # They share the normalised key (and so a held-out split side), never a row.
    keys = Prompt.objects.filter(prompt_set=prompt_set).values_list("content_hash", flat=True)
    assert len(set(keys)) == 1


def test_it_gives_each_job_its_own_prompts_answers_in_a_blind_queue(db) -> None:  # type: ignore[no-untyped-def]
    from labeling.services import QueueSettings, labeling_queue_create

    nfc = unicodedata.normalize("NFC", "Café?")
    nfd = unicodedata.normalize("NFD", "Café?")
    jobs = [
        services.generation_job_import(
            data=json.dumps({"prompt": text, "completions": [f"{n}a", f"{n}b"]}),
            format="jsonl",
            name=f"job {n}",
        )
        for n, text in enumerate([nfc, nfd, nfc])
    ]
    queue = labeling_queue_create(jobs=jobs, settings=QueueSettings(name="blind", mode="ranking"))
    tasks = {t.prompt.text: sorted(c.text for c in t.completions.all()) for t in queue.tasks.all()}
    # The exact same prompt in two jobs is one task; a different byte is another task.
    assert tasks == {nfc: ["0a", "0b", "2a", "2b"], nfd: ["1a", "1b"]}


def test_it_imports_nothing_when_one_line_is_bad(db) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(1)
    data = '{"prompt": "ok"}\n{"prompt": ""}\n'
    with pytest.raises(importers.ImportFileError) as caught:
        services.prompt_set_import(prompt_set=prompt_set, data=data, format="jsonl")
    assert caught.value.line == 2
    assert prompt_set.prompts.count() == 1


def test_it_imports_the_hh_file_as_conversations(db, hh_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(0)
    result = services.prompt_set_import(prompt_set=prompt_set, data=hh_bytes, format="hh")
    assert result.created + result.skipped_duplicates == HH_ROWS
    assert prompt_set.prompts.count() == result.created
    first = first_row(prompt_set.prompts.order_by("position"))
    assert first.messages is not None and first.messages[-1]["role"] == "user"


@pytest.mark.slow
def test_it_imports_every_hh_completion_byte_for_byte(db, hh_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    job = services.generation_job_import(
        data=hh_bytes, format="hh", name="hh", source_name=HH_FILE.name
    )
    prompts = Prompt.objects.filter(prompt_set=job.prompt_set)
    # Two prompts repeat exactly in the file: one prompt each, keeping both rows' answers.
    assert (job.status, job.source, job.prompts_total, prompts.count()) == (
        "succeeded",
        "imported",
        HH_ROWS - 2,
        HH_ROWS - 2,
    )
    assert job.k == 4
    completions = defaultdict(list)
    for completion in Completion.objects.filter(job=job).order_by("prompt_id", "sample_index"):
        completions[completion.prompt_id].append(completion.text)
    rebuilt = []
    for prompt in prompts:
        texts = completions[prompt.pk]
        assert prompt.messages is not None  # HH prompts are conversations
        for chosen, rejected in zip(texts[::2], texts[1::2], strict=True):
            rebuilt.append(
                (
                    importers.hh_transcript(prompt.messages, chosen),
                    importers.hh_transcript(prompt.messages, rejected),
                )
            )
    raw = [json.loads(line) for line in gzip.decompress(hh_bytes).decode("utf-8").splitlines()]
    assert sorted(rebuilt) == sorted((r["chosen"], r["rejected"]) for r in raw)


def test_it_rolls_back_a_completion_import_with_a_bad_line(db) -> None:  # type: ignore[no-untyped-def]
    data = '{"prompt": "a", "completions": ["x"]}\n{"prompt": "b", "completions": []}\n'
    with pytest.raises(importers.ImportFileError) as caught:
        services.generation_job_import(data=data, format="jsonl", name="bad")
    assert caught.value.line == 2
    assert not GenerationJob.objects.exists() and not PromptSet.objects.exists()


def test_it_refuses_a_duplicate_set_name(db) -> None:  # type: ignore[no-untyped-def]
    services.prompt_set_create(name="same")
    with pytest.raises(services.GenerationError, match="already exists"):
        services.prompt_set_create(name="same")


@pytest.mark.parametrize(
    "line",
    [
        '{"prompt": "a\\u0000b", "completions": ["x"]}',
        '{"prompt": "a", "completions": ["x\\u0000y"]}',
        '{"prompt": [{"role": "user", "content": "\\ud83d"}], "completions": ["x"]}',
    ],
)
def test_it_refuses_text_it_cannot_store_exactly_and_imports_nothing(db, line: str) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL text cannot hold NUL (JSON "\u0000"), nor any database a lone surrogate.
    data = '{"prompt": "fine", "completions": ["ok"]}\n' + line + "\n"
    with pytest.raises(importers.ImportFileError) as caught:
        services.generation_job_import(data=data, format="jsonl", name="nul")
    assert caught.value.line == 2
    assert not GenerationJob.objects.exists() and not Prompt.objects.exists()
