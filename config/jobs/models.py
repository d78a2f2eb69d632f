"""The fields and states every background job shares (an abstract model: no table here)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BackgroundJob(models.Model):
    """A row that one worker claims and runs: queued → running → succeeded, failed or
    cancelled; failed and cancelled rows can be queued again (resumed).

    A concrete kind names the setting that says when its heartbeat is stale and what the
    watchdog's error tells the user to do next.
    """

    Status = JobStatus
    ACTIVE: ClassVar[tuple[str, ...]] = (JobStatus.QUEUED, JobStatus.RUNNING)
    FINISHED: ClassVar[tuple[str, ...]] = (
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    )
    RESUMABLE: ClassVar[tuple[str, ...]] = (JobStatus.FAILED, JobStatus.CANCELLED)
    # What a row is called in messages ("a succeeded run cannot be resumed").
    NOUN: ClassVar[str] = "job"
    # Seconds without a heartbeat after which the watchdog fails a running row.
    STALE_AFTER_SETTING: ClassVar[str] = "TRAINING_STALE_AFTER_S"
    # The watchdog's error ends with this: what is kept and how to go on.
    STALE_HINT: ClassVar[str] = "Resume it to go on."
    # What the cancel button says while a running row winds down, and the resume button.
    CANCELLING: ClassVar[str] = "Cancelling at the next step."
    RESUMED: ClassVar[str] = "Resumed."

    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE
