"""Diagnostics tasks, registered in every stack: used by tests, load tests and `doctor`.

They are shared tasks, so a user's own app rebound by celery-stack gets them too.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from celery import shared_task

from stack.retry import NonRetryableError
from stack.task import StackTask

ATTEMPTS_TTL_S = 3600  # attempt logs are for tests and doctor; they expire on their own


class DiagnosticFailure(RuntimeError):
    """The retryable error the failing diagnostics tasks raise."""


def _log_attempt(task: StackTask) -> list[float]:
    """Append this attempt's start time to the task's attempt log; return the whole log."""
    key = f"{task.settings.key_prefix}diagnostics:attempts:{task.request.id}"
    pipe = task.redis.pipeline()
    pipe.rpush(key, repr(time.time()))
    pipe.expire(key, ATTEMPTS_TTL_S)
    pipe.lrange(key, 0, -1)
    return [float(v) for v in pipe.execute()[-1]]


@shared_task(bind=True, base=StackTask, name="diagnostics.echo")
def echo(self: StackTask, value: Any = None) -> Any:
    """Return ``value`` unchanged."""
    return value


@shared_task(bind=True, base=StackTask, name="diagnostics.sleep")
def sleep(self: StackTask, seconds: float = 1.0) -> float:
    """Sleep ``seconds`` and return how long it slept."""
    started = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - started


@shared_task(bind=True, base=StackTask, name="diagnostics.fail")
def fail(self: StackTask, failures: int = 1) -> dict[str, Any]:
    """Fail the first ``failures`` attempts, then succeed with the attempt times."""
    attempts = _log_attempt(self)
    if len(attempts) <= failures:
        raise DiagnosticFailure(f"planned failure {len(attempts)} of {failures}")
    return {"attempts": len(attempts), "attempt_times": attempts}


@shared_task(bind=True, base=StackTask, name="diagnostics.always_fail")
def always_fail(self: StackTask, message: str = "always fails", retryable: bool = True) -> None:
    """Fail every attempt; ``retryable=False`` raises an error that is never retried."""
    _log_attempt(self)
    if retryable:
        raise DiagnosticFailure(message)
    raise NonRetryableError(message)


@shared_task(bind=True, base=StackTask, name="diagnostics.crash")
def crash(self: StackTask, times: int | None = None) -> int:
    """SIGKILL its own worker process on the first ``times`` deliveries (None: every one)."""
    deliveries = len(_log_attempt(self))
    if times is None or deliveries <= times:
        os.kill(os.getpid(), signal.SIGKILL)
    return deliveries


LIMITED_DEFAULT_RATE = "5/s"  # the seeds' example limit; STACK_RATE_LIMITS overrides it


@shared_task(
    bind=True, base=StackTask, name="diagnostics.limited", global_rate_limit=LIMITED_DEFAULT_RATE
)
def limited(self: StackTask, value: Any = None) -> dict[str, Any]:
    """The globally rate-limited task (5/s unless STACK_RATE_LIMITS says otherwise).

    Returns when it ran and when the limiter granted it (Redis clock, the one
    the limit is kept on).
    """
    granted_at = getattr(self.request, "stack_rate_granted_at", None)
    return {"ran_at": time.time(), "granted_at": granted_at, "value": value}
