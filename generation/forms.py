from __future__ import annotations

from typing import Any

from django import forms

from config.bounds import SEED_MAX
from generation.models import GenerationJob, PolicyModel, PromptSet
from generation.services import (
    MAX_BATCHES_PER_SHARD,
    MAX_GPUS,
    GenerationError,
    server_url_check,
)

IMPORT_FORMATS = [
    ("auto", "Detect from the file name"),
    ("jsonl", 'JSONL: {"prompt": ...} per line'),
    ("csv", "CSV with a prompt column"),
    ("hh", "Anthropic HH-RLHF (chosen/rejected transcripts)"),
]
COMPLETION_FORMATS = [
    ("auto", "Detect from the file name"),
    ("jsonl", 'JSONL: {"prompt": ..., "completions": [...], "model": ...}'),
    ("hh", "Anthropic HH-RLHF: chosen and rejected become two completions"),
]
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


class PolicyModelForm(forms.ModelForm):  # type: ignore[type-arg]
    # Not a URLField: Django's URL check wants a dotted host name, and inference servers
    # are often a bare host inside a cluster (http://gpu1:8000/v1).
    server_url = forms.CharField(
        required=False,
        max_length=200,
        help_text=PolicyModel._meta.get_field("server_url").help_text,
    )

    extra_server_urls = forms.CharField(
        required=False,
        label="More servers",
        help_text="Further servers of the same model, one base URL per line: a job spreads "
        "its requests over all of them.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    tensor_parallel_size = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_GPUS,
        initial=1,
        help_text=PolicyModel._meta.get_field("tensor_parallel_size").help_text,
    )

    class Meta:
        model = PolicyModel
        fields = [
            "name",
            "backend",
            "source",
            "server_url",
            "extra_server_urls",
            "server_model",
            "use_chat_template",
            "tensor_parallel_size",
            "parent",
            "description",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def clean_server_url(self) -> str:
        url = self.cleaned_data.get("server_url") or ""
        return _server_url(url) if url else ""

    def clean_extra_server_urls(self) -> list[str]:
        raw = self.cleaned_data.get("extra_server_urls") or ""
        return [_server_url(line.strip()) for line in raw.splitlines() if line.strip()]

    def clean_tensor_parallel_size(self) -> int:
        return self.cleaned_data.get("tensor_parallel_size") or 1


def _server_url(url: str) -> str:
    # Inference servers usually listen on plain HTTP inside a cluster.
    if "://" not in url:
        url = f"http://{url}"
    try:
        return server_url_check(url)
    except GenerationError as exc:
        raise forms.ValidationError(str(exc)) from None


class PromptSetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    file = forms.FileField(required=False, help_text="Optional: prompts to import right away.")
    format = forms.ChoiceField(choices=IMPORT_FORMATS, initial="auto")


def _check_size(upload: Any) -> Any:
    if upload is not None and upload.size > MAX_UPLOAD_BYTES:
        raise forms.ValidationError(f"the file is over {MAX_UPLOAD_BYTES // 2**20} MB")
    return upload


class PromptImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(choices=IMPORT_FORMATS, initial="auto")

    def clean_file(self) -> Any:
        return _check_size(self.cleaned_data.get("file"))


class GenerationJobForm(forms.Form):
    prompt_set = forms.ModelChoiceField(queryset=PromptSet.objects.all())
    model = forms.ModelChoiceField(queryset=PolicyModel.objects.all())
    name = forms.CharField(max_length=200, required=False)
    k = forms.IntegerField(min_value=1, max_value=64, initial=4, label="k (samples per prompt)")
    temperature = forms.FloatField(min_value=0, max_value=100, initial=1.0)
    top_p = forms.FloatField(min_value=0.01, max_value=1.0, initial=1.0)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, initial=64)
    seed = forms.IntegerField(min_value=0, max_value=SEED_MAX, initial=0)
    stop = forms.CharField(
        required=False,
        strip=False,
        help_text=r"Stop strings, one per line; write \n for a newline (e.g. \n\nHuman:).",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    batch_size = forms.IntegerField(min_value=1, max_value=1024, initial=8)
    batches_per_shard = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_BATCHES_PER_SHARD,
        initial=32,
        help_text=GenerationJob._meta.get_field("batches_per_shard").help_text,
    )

    def clean_batches_per_shard(self) -> int:
        return self.cleaned_data.get("batches_per_shard") or 32

    def clean_stop(self) -> list[str]:
        raw = self.cleaned_data.get("stop") or ""
        return [
            line.replace("\\n", "\n").replace("\\t", "\t")
            for line in raw.splitlines()
            if line.strip()
        ]


class CompletionImportForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    file = forms.FileField()
    format = forms.ChoiceField(choices=COMPLETION_FORMATS, initial="auto")
    prompt_set = forms.ModelChoiceField(
        queryset=PromptSet.objects.all(),
        required=False,
        help_text="Leave empty to create a new prompt set named after the job.",
    )

    def clean_file(self) -> Any:
        return _check_size(self.cleaned_data.get("file"))
