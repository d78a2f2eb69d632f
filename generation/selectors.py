"""Reads for the generation app, permission-aware where users are involved."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, QuerySet
from django.http import Http404

from config.roles import user_is_researcher
from generation.models import Completion, GenerationJob, PolicyModel, Prompt, PromptSet


def _require_reader(user: User | AnonymousUser) -> None:
    # Annotators label blind: models, prompt sets and jobs are for researchers and admins.
    if not user_is_researcher(user):
        raise Http404


def policy_model_list(*, user: User | AnonymousUser) -> QuerySet[PolicyModel]:
    _require_reader(user)
    return PolicyModel.objects.select_related("parent").annotate(job_count=Count("jobs"))


def prompt_set_list(*, user: User | AnonymousUser) -> QuerySet[PromptSet]:
    _require_reader(user)
    return PromptSet.objects.annotate(prompt_count=Count("prompts", distinct=True))


def prompt_set_prompts(*, prompt_set: PromptSet) -> QuerySet[Prompt]:
    return prompt_set.prompts.order_by("position")


def generation_job_list(*, user: User | AnonymousUser) -> QuerySet[GenerationJob]:
    _require_reader(user)
    return GenerationJob.objects.select_related("model", "prompt_set").prefetch_related("shards")


def generation_job_completions(*, job: GenerationJob) -> QuerySet[Completion]:
    return job.completions.select_related("prompt").order_by("prompt__position", "sample_index")
