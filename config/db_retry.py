"""Background writes that survive a transiently locked or dropped database.

SQLite answers "database is locked" when another connection holds the write lock past the
busy timeout; PostgreSQL connections drop on failover. A heartbeat or progress write that
raised then would stop beating, and the watchdog would fail a healthy run. These writes are
idempotent (a timestamp, the latest progress), so they are simply tried again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, close_old_connections, connection

logger = logging.getLogger(__name__)
T = TypeVar("T")


def db_write_retry(
    write: Callable[[], T],
    *,
    what: str,
    attempts: int = 5,
    first_delay: float = 0.2,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """``write()``, tried up to ``attempts`` times with doubling pauses while it raises
    ``OperationalError``; the last error is raised. Not for use inside an outer
    transaction (a failed statement poisons it)."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except OperationalError as exc:
            if attempt == attempts or connection.in_atomic_block:
                raise
            logger.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            # A dropped connection must be replaced; a locked SQLite file just needs time.
            close_old_connections()
            if connection.connection is not None and not connection.is_usable():
                connection.close()
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
