from __future__ import annotations

import hashlib

import factory

from generation.importers import exact_hash
from generation.models import Completion, GenerationJob, PolicyModel, Prompt, PromptSet
from tests.factories import ModelFactory


class PolicyModelFactory(ModelFactory[PolicyModel]):
    class Meta:
        model = PolicyModel

    name = factory.Sequence(lambda n: f"model-{n}")
    backend = PolicyModel.Backend.TRANSFORMERS
    source = "/nonexistent/model"


class PromptSetFactory(ModelFactory[PromptSet]):
    class Meta:
        model = PromptSet

    name = factory.Sequence(lambda n: f"prompt set {n}")


class PromptFactory(ModelFactory[Prompt]):
    class Meta:
        model = Prompt

    prompt_set = factory.SubFactory(PromptSetFactory)
    position = factory.Sequence(lambda n: n)
    text = factory.Sequence(lambda n: f"Prompt number {n}: tell me a story.")
    messages = None
    content_hash = factory.LazyAttribute(lambda p: hashlib.sha256(p.text.encode()).hexdigest())
    exact_hash = factory.LazyAttribute(lambda p: exact_hash(p.text, p.messages))


class GenerationJobFactory(ModelFactory[GenerationJob]):
    class Meta:
        model = GenerationJob

    prompt_set = factory.SubFactory(PromptSetFactory)
    model = factory.SubFactory(PolicyModelFactory)
    k = 2
    max_new_tokens = 8


class CompletionFactory(ModelFactory[Completion]):
    class Meta:
        model = Completion

    job = factory.SubFactory(GenerationJobFactory)
    prompt = factory.SubFactory(PromptFactory)
    sample_index = 0
    text = "once upon a time"


def prompt_set_with_prompts(n: int, name: str | None = None) -> PromptSet:
    prompt_set = PromptSetFactory(**({"name": name} if name else {}))
    for i in range(n):
        PromptFactory(prompt_set=prompt_set, position=i, text=f"Prompt {i}: once upon a")
    return prompt_set
