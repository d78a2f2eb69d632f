"""The search page's form: every filter optional, every value bounded."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from labeling.models import LabelingQueue, Ranking, Verdict
from labeling.search import LabelFilter

SCORE_MIN, SCORE_MAX = 1, 7


class SearchForm(forms.Form):
    KINDS = [("labels", "Labels"), ("prompts", "Prompts")]
    FLAGGED = [("", "any"), ("yes", "flagged"), ("no", "not flagged")]

    q = forms.CharField(
        label="Text",
        max_length=200,
        required=False,
        help_text="In the prompt, an answer or the comment.",
    )
    kind = forms.ChoiceField(choices=KINDS, required=False, initial="labels")
    queue = forms.ModelChoiceField(
        queryset=LabelingQueue.objects.order_by("name"), required=False, empty_label="any"
    )
    annotator = forms.ChoiceField(required=False)
    flagged = forms.ChoiceField(choices=FLAGGED, required=False)
    verdict = forms.ChoiceField(
        label="Single answer",
        choices=[("", "any"), *Verdict.choices],
        required=False,
        help_text="Good or bad (single-answer queues).",
    )
    min_score = forms.IntegerField(min_value=SCORE_MIN, max_value=SCORE_MAX, required=False)
    max_score = forms.IntegerField(min_value=SCORE_MIN, max_value=SCORE_MAX, required=False)
    min_agreement = forms.FloatField(
        min_value=0, max_value=1, required=False, help_text="Of the task's annotators, 0 to 1."
    )
    max_agreement = forms.FloatField(min_value=0, max_value=1, required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = (
            get_user_model()
            .objects.filter(pk__in=Ranking.objects.values("annotator_id"))
            .order_by("username")
            .values_list("username", flat=True)
        )
        annotator = self.fields["annotator"]
        assert isinstance(annotator, forms.ChoiceField)
        annotator.choices = [("", "any"), *((n, n) for n in names)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for low, high in (("min_score", "max_score"), ("min_agreement", "max_agreement")):
            if cleaned.get(low) is not None and cleaned.get(high) is not None:
                if cleaned[low] > cleaned[high]:
                    self.add_error(high, f"must be at least {low.replace('_', ' ')}")
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            self.add_error("until", "must not be before since")
        return cleaned

    def label_filter(self) -> LabelFilter:
        data = self.cleaned_data
        return LabelFilter(
            text=data.get("q") or "",
            queue=data.get("queue"),
            annotator=data.get("annotator") or "",
            flagged={"yes": True, "no": False}.get(data.get("flagged") or ""),
            verdict=data.get("verdict") or "",
            min_score=data.get("min_score"),
            max_score=data.get("max_score"),
            min_agreement=data.get("min_agreement"),
            max_agreement=data.get("max_agreement"),
            since=data.get("since"),
            until=data.get("until"),
        )
