"""Forms of the training pages; the config fields are generated from the kind's dataclass."""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse

from config.bounds import SEED_MAX
from generation.models import GenerationJob, PolicyModel, PromptSet
from labeling.models import DatasetSnapshot, LabelingQueue
from training import selectors
from training.core.configs import (
    BUDGET_LIMITS,
    CONFIG_CLASSES,
    INT_LIMIT,
    CommonConfig,
    ConfigField,
    config_fields,
)
from training.models import PrincipleSet, RecommendedSettings, TrainingRun
from training.recommendations import recommended_settings_for, recommended_values

DEFAULT_KIND = TrainingRun.Kind.DPO
# Backends whose weights live on disk or on the hub, so a worker can train them.
TRAINABLE_BACKENDS = (PolicyModel.Backend.TRANSFORMERS, PolicyModel.Backend.VLLM)


def kind_or_default(value: object) -> str:
    """``value`` when it names a kind of run, else the default kind."""
    return str(value) if value in TrainingRun.Kind.values else str(DEFAULT_KIND)


COMMON_FIELDS = frozenset(f.name for f in config_fields(CommonConfig))
_ACRONYMS = {
    "lora": "LoRA",
    "kl": "KL",
    "ppo": "PPO",
    "grpo": "GRPO",
    "vf": "VF",
    "ref": "reference",
    "vllm": "vLLM",
    "gpu": "GPU",
}


def _label(name: str) -> str:
    words = [_ACRONYMS.get(word, word) for word in name.split("_")]
    first = words[0] if words[0] in _ACRONYMS.values() else words[0].capitalize()
    return " ".join([first, *words[1:]])


def _help(text: str) -> str:
    # The docstrings quote names reStructuredText-style (``max_steps``).
    return text.replace("``", "")


# Config fields that mean something only while a box is ticked: the page hides them while
# it is not (static/js/app.js, ``data-shown-with``); the server still validates them.
SHOWN_WITH_PREFIXES = {"lora_": "use_lora"}


def config_form_field(field: ConfigField) -> forms.Field:
    """A form field for one config field: its default as the initial value, its docstring as
    the help text."""
    common: dict[str, Any] = {
        "label": _label(field.name),
        "help_text": _help(field.help),
        "initial": field.default,
    }
    if field.choices:
        form_field: forms.Field = forms.ChoiceField(
            choices=[(c, c) for c in field.choices], **common
        )
    elif field.type is bool:
        form_field = forms.BooleanField(required=False, **common)
    elif field.type is int:
        limit = BUDGET_LIMITS.get(field.name, INT_LIMIT)
        form_field = forms.IntegerField(min_value=-INT_LIMIT, max_value=int(limit), **common)
    elif field.type is float:
        # "any": the browser must not round 1e-5 to its default step of 1.
        form_field = forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}), **common)
    elif field.type is str:
        form_field = forms.CharField(required=False, **common)
    else:  # pragma: no cover
        raise TypeError(f"no form field for config type {field.type!r}")
    for prefix, switch in SHOWN_WITH_PREFIXES.items():
        if field.name.startswith(prefix):
            form_field.widget.attrs["data-shown-with"] = switch
    return form_field


class BaseModelSelect(forms.Select):
    """The base-model choice; each option that recommends settings says for which kinds
    (``data-recommends="reward dpo"``), so the page asks for the settings only when choosing
    it changes them (static/js/app.js)."""

    recommends: dict[int, list[str]]

    def create_option(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(*args, **kwargs)
        value = getattr(option["value"], "value", option["value"])
        kinds = getattr(self, "recommends", {}).get(value if isinstance(value, int) else -1)
        if kinds:
            option["attrs"]["data-recommends"] = " ".join(kinds)
        return option


def trainable_models() -> Any:
    return PolicyModel.objects.filter(backend__in=TRAINABLE_BACKENDS).order_by("name")


class TrainingRunForm(forms.Form):
    """Launch a run of one kind: what to train on, plus every field of that kind's config.

    The config fields keep their dataclass names (``max_steps``, ``beta``...), so an error
    that a service raises about a config field lands on the field that holds it.
    """

    kind = forms.ChoiceField(choices=TrainingRun.Kind.choices)
    base_model = forms.ModelChoiceField(
        queryset=PolicyModel.objects.none(),
        widget=BaseModelSelect,
        help_text="The model to start from (and the frozen reference for DPO, PPO and GRPO).",
    )
    snapshot = forms.ModelChoiceField(
        queryset=DatasetSnapshot.objects.all(),
        help_text="The frozen comparisons (or prompts, for PPO and GRPO) to train on.",
    )
    reward_run = forms.ModelChoiceField(
        queryset=TrainingRun.objects.none(),
        label="Reward model",
        help_text="A finished reward-model run that scores the policy's samples (PPO, GRPO).",
    )
    name = forms.CharField(
        max_length=200, required=False, help_text="Leave empty for a name made from the kind."
    )
    notes = forms.CharField(
        required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(
        self, *args: Any, kind: str, recommend_over_initial: bool = False, **kwargs: Any
    ) -> None:
        """``recommend_over_initial``: the base model's recommended settings replace the
        values in ``initial`` (the admin has just chosen the model or the kind), rather than
        fill only the fields ``initial`` leaves out."""
        super().__init__(*args, **kwargs)
        self.run_kind = kind_or_default(kind)
        self.fields["kind"].initial = self.run_kind
        self.fields["base_model"].queryset = trainable_models()  # type: ignore[attr-defined]
        # Choosing a base model fills in its recommended settings (the kind's fields swap).
        recommends: dict[int, list[str]] = {}
        for model_id, recommended_kind in RecommendedSettings.objects.values_list(
            "base_model_id", "kind"
        ).order_by("kind"):
            recommends.setdefault(model_id, []).append(recommended_kind)
        self.fields["base_model"].widget.recommends = recommends  # type: ignore[attr-defined]
        self.fields["base_model"].widget.attrs.update(
            {
                "hx-get": reverse("training:run-create"),
                "hx-trigger": "change",
                "hx-include": "closest form",
                "hx-params": "not csrfmiddlewaretoken",
                "hx-target": "#kind-fields",
                "hx-swap": "outerHTML",
                "data-recommended-settings": "true",
            }
        )
        if self.run_kind in TrainingRun.RL_KINDS:
            self.fields["reward_run"].queryset = selectors.reward_runs_finished()  # type: ignore[attr-defined]
        else:
            del self.fields["reward_run"]
        self._preselect_only_choices()
        self.config_spec = config_fields(self.run_kind)
        for field in self.config_spec:
            self.fields[field.name] = config_form_field(field)
        self.recommended: RecommendedSettings | None = None
        self.recommended_fields: list[str] = []
        if not self.is_bound:
            self._fill_recommended(override=recommend_over_initial)

    def _fill_recommended(self, *, override: bool) -> None:
        """Show the chosen base model's recommended settings for this kind, each marked with
        where it came from and the kind's own default."""
        model = self._initial_base_model()
        recommended = recommended_settings_for(model=model, kind=self.run_kind)
        defaults = {f.name: f.default for f in self.config_spec}
        for name, value in recommended_values(recommended).items():
            if name not in self.initial or override:
                self.initial[name] = value
                self.recommended_fields.append(name)
                field = self.fields[name]
                field.help_text = (
                    f"Recommended for {model} (the default is {defaults[name]!r}). "
                    f"{field.help_text}"
                )
        if self.recommended_fields:
            self.recommended = recommended

    def _initial_base_model(self) -> PolicyModel | None:
        value = self.initial.get("base_model")
        if isinstance(value, PolicyModel):
            return value
        if value is None or not str(value).isdigit():
            return None
        return trainable_models().filter(pk=int(str(value))).first()  # type: ignore[no-any-return]

    def _preselect_only_choices(self) -> None:
        """Where a choice has exactly one option, start with it chosen (an empty form only)."""
        if self.is_bound:
            return
        for name in ("base_model", "snapshot", "reward_run"):
            field = self.fields.get(name)
            if field is None or name in self.initial:
                continue
            only = list(field.queryset[:2])  # type: ignore[attr-defined]
            if len(only) == 1:
                self.initial[name] = only[0].pk

    @property
    def kind_label(self) -> str:
        return str(TrainingRun.Kind(self.run_kind).label)

    def run_fields(self) -> list[forms.BoundField]:
        """The fields every kind has (the kind itself and PPO's reward run aside)."""
        return [self[name] for name in ("base_model", "snapshot", "name", "notes")]

    def config_bound_fields(self) -> list[forms.BoundField]:
        return [self[f.name] for f in self.config_spec]

    def kind_bound_fields(self) -> list[forms.BoundField]:
        """The settings only this kind has (``beta`` for DPO...)."""
        return [self[f.name] for f in self.config_spec if f.name not in COMMON_FIELDS]

    def common_bound_fields(self) -> list[forms.BoundField]:
        """The settings every kind shares (learning rate, steps, LoRA...)."""
        return [self[f.name] for f in self.config_spec if f.name in COMMON_FIELDS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        config = self.config()
        if config is not None:
            values = {k: v for k, v in config.items() if k not in self.errors}
            try:
                problems = CONFIG_CLASSES[self.run_kind](**values).errors()
            except TypeError:  # pragma: no cover - the fields mirror the dataclass
                problems = []
            for problem in problems:
                field = problem.field if problem.field in self.fields else None
                if field is None or field not in self.errors:
                    self.add_error(field, problem.message)
        return cleaned

    def config(self) -> dict[str, Any] | None:
        """The config values as cleaned so far (every field of the kind's dataclass)."""
        if not hasattr(self, "cleaned_data"):
            return None
        data: dict[str, Any] = {}
        for field in self.config_spec:
            if field.name in self.cleaned_data:
                value = self.cleaned_data[field.name]
                data[field.name] = field.default if value is None else value
        return data

    def service_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``training_run_create`` (without ``user``)."""
        data = self.cleaned_data
        return {
            "kind": self.run_kind,
            "base_model": data["base_model"],
            "snapshot": data["snapshot"],
            "config": self.config() or {},
            "reward_run": data.get("reward_run"),
            "name": data.get("name", ""),
            "notes": data.get("notes", ""),
        }


class RewardScoringForm(forms.Form):
    reward_run = forms.ModelChoiceField(
        queryset=TrainingRun.objects.none(), label="Reward model", empty_label=None
    )
    # Any job: the service says why one that has not finished cannot be scored.
    job = forms.ModelChoiceField(queryset=GenerationJob.objects.all(), label="Generation job")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reward_run"].queryset = selectors.reward_runs_finished()  # type: ignore[attr-defined]


# Filters of the run list: (query parameter, label, choices builder).
def run_filter_choices() -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [
        ("kind", "Kind", [(k, str(label)) for k, label in TrainingRun.Kind.choices]),
        ("status", "Status", [(s, s) for s in TrainingRun.Status.values]),
        (
            "snapshot",
            "Snapshot",
            [(str(pk), name) for pk, name in DatasetSnapshot.objects.values_list("pk", "name")],
        ),
        (
            "base_model",
            "Base model",
            [(str(pk), name) for pk, name in trainable_models().values_list("pk", "name")],
        ),
    ]


# --- evaluations and rounds -----------------------------------------------------------------


class EvaluationForm(forms.Form):
    """A blind evaluation: which models, on which held-out prompts, sampled how."""

    name = forms.CharField(max_length=200)
    models = forms.ModelMultipleChoiceField(
        queryset=PolicyModel.objects.order_by("name"),
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Two or more models; each answers every prompt once.",
    )
    prompt_set = forms.ModelChoiceField(
        queryset=PromptSet.objects.order_by("name"),
        help_text="Held-out prompts: none the models were trained on.",
    )
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, initial=128)
    temperature = forms.FloatField(min_value=0, max_value=100, initial=0.7)
    seed = forms.IntegerField(min_value=0, max_value=SEED_MAX, initial=0)
    overlap = forms.IntegerField(
        min_value=1,
        max_value=20,
        initial=1,
        help_text="How many different annotators judge each pair.",
    )

    def clean_models(self) -> Any:
        models = self.cleaned_data["models"]
        if len(models) < 2:
            raise forms.ValidationError("Choose at least two models.")
        return models


class NextRoundForm(forms.Form):
    """The next round after a policy run; the defaults come from the previous queue."""

    prompt_set = forms.ModelChoiceField(
        queryset=PromptSet.objects.order_by("name"),
        help_text="The prompts to sample from the new model.",
    )
    k = forms.IntegerField(min_value=2, max_value=64, initial=4, label="k (samples per prompt)")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, initial=64)
    name = forms.CharField(
        max_length=200,
        required=False,
        help_text="The new labeling queue's name; leave empty for one made from the model.",
    )


class CompareWithParentForm(forms.Form):
    prompt_set = forms.ModelChoiceField(
        queryset=PromptSet.objects.order_by("name"), label="Held-out prompt set"
    )
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, initial=128)


class QueueAssistForm(forms.Form):
    """A queue dashboard's reward-model assistance: a finished reward run and the task order."""

    reward_run = forms.ModelChoiceField(
        queryset=selectors.reward_runs_finished(),
        required=False,
        empty_label="(none)",
        help_text="Scores the queue's completions; the dashboard compares it with annotators.",
    )
    task_order = forms.ChoiceField(
        choices=LabelingQueue.TaskOrder.choices,
        help_text="Uncertainty first serves the pairs the reward model is least sure about.",
    )


class PrincipleSetForm(forms.Form):
    """A queue's constitution: saving a changed one adds a version (the text kept as typed)."""

    name = forms.CharField(max_length=PrincipleSet.MAX_NAME, strip=False)
    text = forms.CharField(
        label="Principles",
        max_length=PrincipleSet.MAX_TEXT,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=(
            "One principle per line, as the question the judge answers, e.g. "
            '"Which response is more helpful, honest and harmless?"'
        ),
    )


class ConstitutionLabelForm(forms.Form):
    """The model that judges the queue by its current constitution."""

    judge_model = forms.ModelChoiceField(
        queryset=PolicyModel.objects.order_by("name"),
        help_text=(
            "A local model is read through its verdict tokens' likelihood; a served one "
            "(OpenAI-compatible) answers (A) or (B)."
        ),
    )
