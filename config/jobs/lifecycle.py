"""Services on background-job rows: claim, heartbeat, cancel, resume, fail-stale, execute.

A kind of job declares one :class:`Lifecycle` (or a subclass, for its resume checks and
failure details) beside its other services::

    job_lifecycle = Lifecycle(GenerationJob, errors=(GenerationError,), task=...)
    job_lifecycle.execute(job_id, run_batches, heartbeat_interval=5.0)

Every transition is a guarded write: a claim is a conditional UPDATE from ``queued`` (zero
rows: another worker got there first), progress and the end are conditional on ``running``
(zero rows: the row was cancelled, failed by the watchdog or deleted under the worker, which
then stops with :class:`JobLost`). Cancel and resume lock the row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from config.heartbeat import Heartbeat
from config.jobs.models import BackgroundJob, JobStatus

logger = logging.getLogger(__name__)

J = TypeVar("J", bound=BackgroundJob)


_declared: dict[type[BackgroundJob], Lifecycle[Any]] = {}


class JobLost(Exception):
    """The row left the running state under its worker (cancelled, failed by the watchdog,
    deleted): the worker stops and writes nothing more."""


class Lifecycle(Generic[J]):
    """The lifecycle services of one kind of background job (``model``).

    ``errors`` are the failures whose message says enough (others are logged with their
    traceback); the first is the kind's user-facing error, raised by cancel and resume and
    shown as is. ``task`` is the dotted path of the Celery task (taking the row's id) that a
    queued row is sent to after the commit, and ``related`` what ``execute`` and ``resume``
    load with it. Messages name a row by the model's ``NOUN``.
    """

    def __init__(
        self,
        model: type[J],
        *,
        errors: tuple[type[Exception], ...] = (ValueError,),
        task: str = "",
        related: Sequence[str] = (),
    ) -> None:
        self.model = model
        # The first lifecycle declared for a model is the one the watchdog uses.
        _declared.setdefault(model, self)
        self.noun = model.NOUN
        self.error = errors[0]
        self.expected_errors = errors
        self.task = task
        self.related = tuple(related)

    def __repr__(self) -> str:
        return f"Lifecycle({self.model.__name__})"

    @property
    def _rows(self) -> QuerySet[J]:
        return self.model._default_manager.all()

    # --- the worker's side ------------------------------------------------------------------

    def claim(self, pk: int, **fields: Any) -> bool:
        """Move row ``pk`` from queued to running for this worker; False when it was not
        queued (another worker claimed it, it was cancelled, it is gone). ``fields`` are
        written with the claim (a counter to restart, say)."""
        now = timezone.now()
        return bool(
            self._rows.filter(pk=pk, status=JobStatus.QUEUED).update(
                status=JobStatus.RUNNING,
                started_at=now,
                heartbeat_at=now,
                error="",
                attempts=F("attempts") + 1,
                **fields,
            )
        )

    def claim_next(self, queryset: QuerySet[J] | None = None, **fields: Any) -> J | None:
        """Claim the oldest queued row of ``queryset`` (default: every row of the kind), for
        a queue of rows that many workers take from; None when none is left.

        On PostgreSQL the candidate is read ``FOR UPDATE SKIP LOCKED``, so workers pass over
        each other's rows instead of waiting on them; elsewhere the conditional UPDATE alone
        decides, and a worker that loses a race tries the next row.
        """
        rows = (self._rows if queryset is None else queryset).filter(status=JobStatus.QUEUED)
        rows = rows.order_by("pk")
        skip_locked = connections[rows.db].features.has_select_for_update_skip_locked
        while True:
            with transaction.atomic(using=rows.db):
                candidates = (
                    rows.select_for_update(skip_locked=True, of=("self",)) if skip_locked else rows
                )
                pk = candidates.values_list("pk", flat=True).first()
                if pk is None:
                    return None
                if self.claim(pk, **fields):
                    return self._rows.get(pk=pk)

    def heartbeat(self, pk: int, interval: float) -> Heartbeat:
        """``with lifecycle.heartbeat(pk, 5.0):`` keeps the row's heartbeat fresh."""
        return Heartbeat(self.model, pk, interval)

    def cancel_requested(self, pk: int) -> bool:
        """Whether someone asked the running row to stop (checked between steps)."""
        return self._rows.filter(pk=pk, cancel_requested=True).exists()

    def update_running(self, pk: int, **fields: Any) -> None:
        """Write progress on a running row; :class:`JobLost` if it is no longer running."""
        if not self._rows.filter(pk=pk, status=JobStatus.RUNNING).update(**fields):
            raise JobLost

    def finish(self, pk: int, status: str, **fields: Any) -> bool:
        """End a running row as ``status``; False if it was no longer running."""
        now = timezone.now()
        return bool(
            self._rows.filter(pk=pk, status=JobStatus.RUNNING).update(
                status=status, finished_at=now, cancel_requested=False, **fields
            )
        )

    def fail(self, pk: int, message: str, **fields: Any) -> bool:
        return self.finish(pk, JobStatus.FAILED, error=message, **fields)

    def status_of(self, pk: int) -> str:
        return self._rows.filter(pk=pk).values_list("status", flat=True).first() or "gone"

    def execute(
        self,
        pk: int,
        work: Callable[[J], object],
        *,
        heartbeat_interval: float = 5.0,
        claim_fields: Mapping[str, Any] | None = None,
    ) -> str:
        """Claim row ``pk`` and run ``work`` on it under a heartbeat. Safe to call twice:
        only one caller claims the row ("skipped" for the other).

        ``work`` ends the row itself (:meth:`finish`); an exception fails it with the
        message (:meth:`failure_fields` may add to the write), :class:`JobLost` stops it
        quietly. Returns the row's status afterwards.
        """
        if not self.claim(pk, **(claim_fields or {})):
            logger.info("%s %s was not queued (claimed elsewhere or gone)", self.noun, pk)
            return "skipped"
        job = self._rows.select_related(*self.related).get(pk=pk)
        return self.run_claimed(job, work, heartbeat_interval=heartbeat_interval)

    def execute_next(
        self,
        queryset: QuerySet[J],
        work: Callable[[J], object],
        *,
        heartbeat_interval: float = 5.0,
        claim_fields: Mapping[str, Any] | None = None,
    ) -> J | None:
        """:meth:`claim_next` of ``queryset`` and run ``work`` on it as :meth:`execute` does;
        the row as it ended, or None when no queued row was left."""
        claimed = self.claim_next(queryset, **(claim_fields or {}))
        if claimed is None:
            return None
        job = self._rows.select_related(*self.related).get(pk=claimed.pk)
        self.run_claimed(job, work, heartbeat_interval=heartbeat_interval)
        return self._rows.get(pk=claimed.pk)

    def run_claimed(
        self, job: J, work: Callable[[J], object], *, heartbeat_interval: float = 5.0
    ) -> str:
        """Run ``work`` on a row this worker has just claimed (see :meth:`execute`)."""
        pk = job.pk
        try:
            with self.heartbeat(pk, heartbeat_interval):
                work(job)
        except JobLost:
            logger.info("%s %s left the running state; it stopped", self.noun, pk)
        except Exception as exc:
            if isinstance(exc, self.expected_errors):
                logger.warning("%s %s failed: %s", self.noun, pk, exc)
                message = str(exc)
            else:
                logger.exception("%s %s failed", self.noun, pk)
                message = f"{type(exc).__name__}: {exc}"
            with transaction.atomic():
                self.fail(pk, message, **self.failure_fields(pk, exc))
        return self.status_of(pk)

    def failure_fields(self, pk: int, exc: Exception) -> dict[str, Any]:
        """What else a failure writes (a kind's log, say); called inside the ``except``."""
        return {}

    # --- the user's side ----------------------------------------------------------------------

    def lock(self, pk: int) -> J:
        # ``of=self``: PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.
        return self._rows.select_for_update(of=("self",)).select_related(*self.related).get(pk=pk)

    @transaction.atomic
    def cancel(self, job: J) -> J:
        """A queued row stops at once; a running one when its worker next checks the flag."""
        job = self.lock(job.pk)
        if job.status == JobStatus.QUEUED:
            job.status = JobStatus.CANCELLED
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "finished_at"])
        elif job.status == JobStatus.RUNNING:
            job.cancel_requested = True
            job.save(update_fields=["cancel_requested"])
        else:
            raise self.error(f"a {job.status} {self.noun} cannot be cancelled")
        return job

    @transaction.atomic
    def resume(self, job: J) -> J:
        """Queue a failed or cancelled row again (after :meth:`check_resume`); a worker
        starts on it after the commit."""
        job = self.lock(job.pk)
        if job.status not in job.RESUMABLE:
            raise self.error(f"a {job.status} {self.noun} cannot be resumed")
        self.check_resume(job)
        fields: dict[str, Any] = {
            "status": JobStatus.QUEUED,
            "cancel_requested": False,
            "error": "",
            "finished_at": None,
            **self.resume_fields(job),
        }
        for name, value in fields.items():
            setattr(job, name, value)
        job.save(update_fields=list(fields))
        self.enqueue(job)
        return job

    def check_resume(self, job: J) -> None:
        """Raise ``error`` if this row must not run again (a kind's own checks)."""

    def resume_fields(self, job: J) -> dict[str, Any]:
        """Fields a resume sets besides the state (where to go on from, say)."""
        return {}

    def enqueue(self, job: J) -> None:
        """Send the queued row to its worker once the transaction commits."""
        if not self.task:
            return
        task, pk = import_string(self.task), job.pk
        transaction.on_commit(lambda: task.delay(pk))

    def act(self, action: str, job: J) -> J:
        """``cancel`` or ``resume`` by name (what the API and the pages post)."""
        if action == "cancel":
            return self.cancel(job)
        if action == "resume":
            return self.resume(job)
        raise ValueError(f"unknown action {action!r}")

    # --- the watchdog -------------------------------------------------------------------------

    def fail_stale(self, *, stale_after: timedelta | None = None) -> int:
        """Fail running rows whose worker stopped sending heartbeats. Returns how many."""
        if stale_after is None:
            stale_after = timedelta(seconds=getattr(settings, self.model.STALE_AFTER_SETTING))
        now = timezone.now()
        return self._rows.filter(
            status=JobStatus.RUNNING, heartbeat_at__lt=now - stale_after
        ).update(
            status=JobStatus.FAILED,
            finished_at=now,
            cancel_requested=False,
            error=(
                "The worker stopped sending heartbeats for over "
                f"{int(stale_after.total_seconds())} s (it crashed or was killed). "
                f"{self.model.STALE_HINT}"
            ),
        )


def background_job_models() -> list[type[BackgroundJob]]:
    """Every installed kind of background job (the concrete models of :class:`BackgroundJob`)."""
    return [m for m in apps.get_models() if issubclass(m, BackgroundJob)]


def background_jobs_fail_stale() -> dict[str, int]:
    """The watchdog: fail the stale rows of every kind. Returns the count per model label."""
    return {
        model._meta.label: lifecycle_of(model).fail_stale() for model in background_job_models()
    }


def lifecycle_of(model: type[J]) -> Lifecycle[J]:
    """The lifecycle a kind declared in its services (its own ``fail_stale``, say), else a
    plain one."""
    return _declared.get(model) or Lifecycle(model)
