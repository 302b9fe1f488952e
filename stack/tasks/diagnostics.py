"""Diagnostics tasks, registered in every stack: used by tests, load tests and `doctor`.

They are shared tasks, so a user's own app rebound by celery-stack gets them too.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from stack.retry import NonRetryableError
from stack.settings import Settings
from stack.task import StackTask

ATTEMPTS_TTL_S = 3600  # attempt logs are for tests and doctor; they expire on their own
RUNS_KEY = "diagnostics:record:runs"  # hash token -> executions started (after key_prefix)
PIDS_KEY = "diagnostics:record:pids"  # hash token -> pid of the process that ran it last
EFFECTS_KEY = "diagnostics:record:effects"  # hash token -> effects applied
DONE_KEY = "diagnostics:record:done:"  # + token: the idempotency guard, set once
# Apply the effect only if no execution of this token applied it before (atomic).
APPLY_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


class DiagnosticFailure(RuntimeError):
    """The retryable error the failing diagnostics tasks raise."""


def attempts_key(settings: Settings, task_id: str) -> str:
    """The list of a task's attempt start times (epoch s), one entry per delivery that ran."""
    return f"{settings.key_prefix}diagnostics:attempts:{task_id}"


def attempt_log(client: redis.Redis[bytes], settings: Settings, task_id: str) -> list[float]:
    """The start times of every attempt of ``task_id`` so far."""
    return [float(v) for v in client.lrange(attempts_key(settings, task_id), 0, -1)]


def _log_attempt(task: StackTask) -> list[float]:
    """Append this attempt's start time to the task's attempt log; return the whole log."""
    key = attempts_key(task.settings, task.request.id)
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


@shared_task(bind=True, base=StackTask, name="diagnostics.record")
def record(self: StackTask, token: str, seconds: float = 0.0) -> dict[str, Any]:
    """Count each execution of ``token``, sleep ``seconds``, then apply its effect once.

    An idempotency-sensitive task as it should be written: at-least-once delivery
    may run it again (a killed worker), so the effect is guarded by ``token`` in
    Redis. Chaos tests read the counts: every token's effect applied exactly once.
    """
    prefix = self.settings.key_prefix
    pipe = self.redis.pipeline()
    pipe.hincrby(f"{prefix}{RUNS_KEY}", token, 1)
    pipe.hset(f"{prefix}{PIDS_KEY}", token, os.getpid())
    for key in (RUNS_KEY, PIDS_KEY):
        pipe.expire(f"{prefix}{key}", ATTEMPTS_TTL_S)
    runs = int(pipe.execute()[0])
    time.sleep(seconds)
    applied = self.redis.register_script(APPLY_ONCE)(
        keys=[f"{prefix}{DONE_KEY}{token}", f"{prefix}{EFFECTS_KEY}"],
        args=[str(self.request.id), token, ATTEMPTS_TTL_S],
    )
    return {"token": token, "runs": runs, "applied": bool(applied)}


@shared_task(bind=True, base=StackTask, name="diagnostics.stuck")
def stuck(self: StackTask, seconds: float = 60.0) -> float:
    """Sleep ``seconds`` ignoring the soft time limit, as code stuck in C would.

    Only the hard time limit (the pool kills the child) stops it.
    """
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            time.sleep(left)
        except SoftTimeLimitExceeded:
            continue
    return seconds
