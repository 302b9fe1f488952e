"""RetryPolicy: which errors retry, the delay schedule, jitter."""

from __future__ import annotations


class NonRetryableError(Exception):
    """Raise (or subclass) this in a task to send it straight to the dead letters."""
