"""One lifecycle for every background job: generation jobs, training runs, reward scorings.

- ``config.jobs.models``: the abstract :class:`BackgroundJob` (status, cancel flag,
  heartbeat, times, error, attempts) a kind of job inherits.
- ``config.jobs.lifecycle``: :class:`Lifecycle`, the services on such rows (claim,
  heartbeat, cancel, resume, fail-stale, execute) and the watchdog over every kind.
- ``config.jobs.api`` and ``config.jobs.views``: the cancel/resume API mixin and the
  helper behind the pages' cancel/resume buttons.
"""
