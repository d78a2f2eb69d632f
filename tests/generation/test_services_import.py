from __future__ import annotations

import pytest

from generation import importers, services
from generation.models import Completion, GenerationJob, Prompt, PromptSet
from tests.generation.factories import prompt_set_with_prompts
from tests.paths import HH_FILE

HH_ROWS = 2312


@pytest.fixture
def hh_bytes() -> bytes:
    if not HH_FILE.is_file():
        pytest.fail(f"the HH-RLHF test file is missing at {HH_FILE}")
    return HH_FILE.read_bytes()


def test_it_imports_prompts_and_counts_duplicates(db) -> None:  # type: ignore[no-untyped-def]
    prompt_set = prompt_set_with_prompts(0)
    data = '{"prompt": "Hello  world"}\n{"prompt": " Hello world\\n"}\n{"prompt": "Other"}\n'
    result = services.prompt_set_import(prompt_set=prompt_set, data=data, format="jsonl")
    assert (result.created, result.skipped_duplicates) == (2, 1)
    again = services.prompt_set_import(
        prompt_set=prompt_set, data='{"prompt": "Other"}\n{"prompt": "New"}', format="jsonl"
    )
    assert (again.created, again.skipped_duplicates) == (1, 1)
    assert list(prompt_set.prompts.values_list("position", flat=True)) == [0, 1, 2]


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
    first = prompt_set.prompts.order_by("position").first()
    assert first.messages[-1]["role"] == "user"


def test_it_imports_hh_completions_as_a_finished_job(db, hh_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    job = services.generation_job_import(
        data=hh_bytes, format="hh", name="hh", source_name=HH_FILE.name
    )
    assert (job.status, job.source, job.k) == ("succeeded", "imported", 2)
    prompts = Prompt.objects.filter(prompt_set=job.prompt_set).count()
    assert job.prompts_total == prompts
    # A prompt repeated in the file keeps the completions of its first row only.
    assert Completion.objects.filter(job=job).count() == 2 * prompts
    assert prompts <= HH_ROWS


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


def test_it_stores_text_with_nul_bytes(db) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL refuses NUL in text; byte-level models and JSON "\u0000" can produce it.
    data = '{"prompt": "a\\u0000b", "completions": ["x\\u0000y"]}\n'
    job = services.generation_job_import(data=data, format="jsonl", name="nul")
    assert Prompt.objects.get(prompt_set=job.prompt_set).text == "a\ufffdb"
    assert Completion.objects.get(job=job).text == "x\ufffdy"
