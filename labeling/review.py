"""Review: a lead accepts or rejects annotators' labels, with a reason the annotator sees.

Reviews are append-only (:class:`~labeling.models.LabelReview`); the one that counts for a
label is the latest review of its current version. Rejected labels leave snapshots built
afterwards (:func:`rejected_labels` is the filter snapshots apply); nothing already frozen
changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from labeling.models import LabelingQueue, LabelReview, Ranking

REASON_MAX = 2000


class ReviewAnnotations(TypedDict):
    review_status: str | None
    review_reason: str | None


if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    ReviewedRanking = WithAnnotations[Ranking, ReviewAnnotations]


class ReviewError(ValueError):
    """A review that cannot be made, with the reason in words."""


def _latest_review(field: str) -> Subquery:
    """The ``field`` of the latest review of a ranking's current version (in a Ranking query)."""
    return Subquery(
        LabelReview.objects.filter(
            task_id=OuterRef("task_id"),
            annotator_id=OuterRef("annotator_id"),
            version=OuterRef("version"),
        )
        .order_by("-id")
        .values(field)[:1]
    )


def rankings_with_review(rankings: QuerySet[Ranking]) -> QuerySet[ReviewedRanking]:
    """``rankings`` annotated with ``review_status`` and ``review_reason`` (None: unreviewed)."""
    return rankings.annotate(
        review_status=_latest_review("status"), review_reason=_latest_review("reason")
    )


def rejected_labels(rankings: QuerySet[Ranking]) -> QuerySet[ReviewedRanking]:
    """The rankings among ``rankings`` whose current version's latest review rejects it."""
    return rankings_with_review(rankings).filter(review_status=LabelReview.Status.REJECTED)


@transaction.atomic
def label_review(
    *,
    ranking: Ranking,
    status: str,
    reason: str = "",
    reviewer: User,
    version: int | None = None,
) -> LabelReview:
    """Accept or reject ``ranking`` as it stands. A rejection needs a reason.

    ``version`` is the version the reviewer saw; if the annotator has changed the label since,
    the review is refused rather than applied to an answer nobody looked at.
    """
    if status not in LabelReview.Status.values:
        raise ReviewError(f"status must be one of {', '.join(LabelReview.Status.values)}")
    reason = reason.strip()
    if "\x00" in reason:
        raise ReviewError("the reason contains a NUL character")
    if len(reason) > REASON_MAX:
        raise ReviewError(f"a reason has at most {REASON_MAX} characters")
    if status == LabelReview.Status.REJECTED and not reason:
        raise ReviewError("say why the label is rejected: the annotator sees the reason")
    current = Ranking.objects.select_for_update().filter(pk=ranking.pk).first()
    if current is None:
        raise ReviewError("this label was taken back by its annotator")
    if version is not None and version != current.version:
        raise ReviewError("the annotator changed this label since you opened it: review it again")
    return LabelReview.objects.create(
        task_id=current.task_id,
        annotator_id=current.annotator_id,
        version=current.version,
        status=status,
        reason=reason,
        reviewer=reviewer,
        created_at=timezone.now(),
    )


REVIEW_FILTERS = {
    "all": "every label",
    "unreviewed": "not reviewed yet",
    "flagged": "flagged",
    "commented": "with a comment",
    "rejected": "rejected",
}


def review_queue_labels(*, queue: LabelingQueue, show: str = "all") -> QuerySet[ReviewedRanking]:
    """The queue's current labels for the review page, with their review, newest first."""
    labels = rankings_with_review(
        Ranking.objects.filter(task__queue=queue).select_related("task__prompt", "annotator")
    ).prefetch_related("task__slots__completion")
    if show == "unreviewed":
        labels = labels.filter(review_status__isnull=True)
    elif show == "flagged":
        labels = labels.exclude(flags=[])
    elif show == "commented":
        labels = labels.exclude(comment="")
    elif show == "rejected":
        labels = labels.filter(review_status=LabelReview.Status.REJECTED)
    return labels.order_by("-updated_at", "-pk")


@dataclass(frozen=True)
class Rejection:
    ranking: Ranking
    reason: str
    reviewer: str
    at: Any


def annotator_rejected_count(*, user: User) -> int:
    """How many of the annotator's current labels a lead has rejected (no cap)."""
    return rejected_labels(Ranking.objects.filter(annotator=user)).count()


def annotator_rejections(*, user: User, queue: LabelingQueue | None = None) -> list[Rejection]:
    """The annotator's current labels that a lead rejected, with the reason, newest first."""
    rankings = Ranking.objects.filter(annotator=user).select_related("task__prompt", "task__queue")
    if queue is not None:
        rankings = rankings.filter(task__queue=queue)
    rejected = rejected_labels(rankings).annotate(
        reviewer_name=_latest_review("reviewer__username"), reviewed_at=_latest_review("created_at")
    )
    return [
        Rejection(r, r.review_reason or "", r.reviewer_name or "", r.reviewed_at)  # type: ignore[attr-defined]
        for r in rejected.order_by("-reviewed_at")[:200]
    ]
