"""Admins choose who may label a queue (empty: every annotator)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from config.roles import ADMIN, ANNOTATOR, AuthenticatedRequest, role_required
from labeling import selectors, services


def _annotators() -> object:
    return (
        get_user_model()
        .objects.filter(groups__name=ANNOTATOR, is_active=True)
        .order_by("username")
        .distinct()
    )


class QueueAnnotatorsForm(forms.Form):
    annotators = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to open the queue to every annotator.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["annotators"].queryset = _annotators()  # type: ignore[attr-defined]


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def queue_annotators(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    queue = selectors.queue_get(user=request.user, pk=pk)
    # An empty POST (nobody ticked) is still a submission: it opens the queue to everyone.
    form = QueueAnnotatorsForm(
        request.POST if request.method == "POST" else None,
        initial={"annotators": list(queue.annotators.all())},
    )
    if request.method == "POST":
        if form.is_valid():
            chosen = list(form.cleaned_data["annotators"])
            services.queue_annotators_set(queue=queue, annotators=chosen)
            names = ", ".join(u.get_username() for u in chosen) or "every annotator"
            messages.success(request, f"{queue.name} is open to {names}.")
            return redirect("labeling:queue-annotators", pk=queue.pk)
        return render(
            request, "labeling/queue_annotators.html", {"queue": queue, "form": form}, status=400
        )
    return render(request, "labeling/queue_annotators.html", {"queue": queue, "form": form})
