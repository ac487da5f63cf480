"""Bounded retries of a Delta write that lost a race to a concurrent commit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from carelake.delta import DeltaConflictError

log = logging.getLogger(__name__)

T = TypeVar("T")


def retry_on_conflict(operation: Callable[[], T], uri: str, attempts: int = 3, backoff_s: float = 0.5) -> T:
    """Run ``operation`` (a write to ``uri``); on DeltaConflictError run it again, ``attempts`` times in all.

    Only operations that re-read the table's latest snapshot on every call may be retried (merge,
    delete, append): each attempt then applies its change on top of the concurrent commit, so
    nothing is lost. Waits ``backoff_s`` doubled per attempt; the last conflict is raised with
    the number of attempts made.
    """
    if attempts < 1:
        raise ValueError(f"retry_on_conflict({uri}): attempts must be at least 1, found {attempts}")
    for attempt in range(1, attempts):
        try:
            return operation()
        except DeltaConflictError:
            log.warning("write to %s conflicted with a concurrent commit (attempt %d of %d); retrying", uri, attempt, attempts)
            time.sleep(backoff_s * 2 ** (attempt - 1))
    try:
        return operation()
    except DeltaConflictError as exc:
        raise DeltaConflictError(uri, f"still conflicting after {attempts} attempt(s): {exc}") from exc
