from __future__ import annotations

from django import forms

from config.bounds import SEED_MAX
from labeling.models import DatasetSnapshot, LabelingQueue
from labeling.services import FLAGS


class SnapshotForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    queues = forms.ModelMultipleChoiceField(
        queryset=LabelingQueue.objects.all(), widget=forms.SelectMultiple(attrs={"size": 5})
    )
    date_from = forms.DateTimeField(required=False, help_text="YYYY-MM-DD HH:MM, optional")
    date_to = forms.DateTimeField(required=False)
    annotators = forms.CharField(
        required=False, help_text="Usernames, comma-separated; empty: all."
    )
    exclude_flags = forms.MultipleChoiceField(
        required=False,
        choices=[(f, f) for f in FLAGS],
        widget=forms.CheckboxSelectMultiple,
        initial=["unsafe", "broken"],
    )
    both_bad = forms.ChoiceField(
        choices=[
            ("keep", "keep them"),
            ("drop", "drop them"),
            ("only", "only them"),
        ],
        initial="keep",
        required=False,
        label="'Both bad' labels",
        help_text="Labels that marked every answer bad.",
    )
    aggregation = forms.ChoiceField(choices=DatasetSnapshot.Aggregation.choices)
    ties = forms.ChoiceField(choices=DatasetSnapshot.Ties.choices)
    min_agreement = forms.FloatField(min_value=0, max_value=1, initial=0)
    include_ai = forms.BooleanField(
        required=False,
        label="Include AI labels",
        help_text="Comparisons by AI labelers (reward models) are left out unless ticked.",
    )
    eval_fraction = forms.FloatField(
        min_value=0, max_value=0.9, initial=0.1, help_text="Held out by prompt."
    )
    seed = forms.IntegerField(min_value=0, max_value=SEED_MAX, initial=0)

    def clean_both_bad(self) -> str:
        return self.cleaned_data.get("both_bad") or "keep"

    def clean_annotators(self) -> list[str]:
        raw = self.cleaned_data.get("annotators") or ""
        return [name.strip() for name in raw.split(",") if name.strip()]
