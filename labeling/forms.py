from __future__ import annotations

from django import forms

from config.bounds import ID_MAX, SEED_MAX
from generation.models import GenerationJob
from labeling.models import LabelingQueue
from labeling.services import COMMENT_MAX_LENGTH, DEMONSTRATION_MAX_LENGTH, FLAGS


class LabelingQueueForm(forms.Form):
    name = forms.CharField(max_length=200)
    jobs = forms.ModelMultipleChoiceField(
        queryset=GenerationJob.objects.filter(status=GenerationJob.Status.SUCCEEDED),
        help_text="Several jobs (models) in one queue make a blind comparison.",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    mode = forms.ChoiceField(choices=LabelingQueue.Mode.choices)
    ask_scores = forms.BooleanField(required=False, label="Ask a 1–7 score per response")
    overlap = forms.IntegerField(
        min_value=1,
        max_value=20,
        initial=1,
        help_text="How many different annotators see each task.",
    )
    pairs_per_prompt = forms.IntegerField(
        min_value=1, max_value=20, initial=1, help_text="Pairwise mode: pairs drawn per prompt."
    )
    lease_minutes = forms.IntegerField(
        min_value=1,
        max_value=24 * 60,
        initial=15,
        help_text="A claimed task returns to the pool after this long.",
    )
    guidelines = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 6}), help_text="Markdown."
    )
    seed = forms.IntegerField(min_value=0, max_value=SEED_MAX, initial=0)


class SubmissionForm(forms.Form):
    """What the labeling page posts. ``choice`` (pairwise buttons, or good/bad on a single
    answer) or ``rank_<alias>`` fields."""

    assignment = forms.IntegerField(min_value=1, max_value=ID_MAX)
    choice = forms.ChoiceField(
        required=False,
        choices=[(c, c) for c in ("a", "b", "tie", "both_bad", "skip", "rank", "good", "bad")],
    )
    comment = forms.CharField(required=False, max_length=COMMENT_MAX_LENGTH)
    flags = forms.MultipleChoiceField(required=False, choices=[(f, f) for f in FLAGS])
    demonstration = forms.CharField(
        required=False, max_length=DEMONSTRATION_MAX_LENGTH, strip=False
    )
