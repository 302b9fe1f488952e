"""RetryPolicy: which errors retry, the delay schedule, jitter.

Celery's own retry knobs live on each task and know nothing of the dead
letters; here one policy, built from Settings (and a task's overrides),
answers the only question a failing task asks: retry in how long, or give up.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from stack.errors import SettingsError
from stack.settings import Settings


class NonRetryableError(Exception):
    """Raise (or subclass) this in a task to send it straight to the dead letters."""


# A task that ran out of time would most likely run out again: dead-letter it at once.
ALWAYS_FINAL: tuple[type[BaseException], ...] = (
    NonRetryableError,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
)


@dataclass(frozen=True)
class RetryDecision:
    """What to do with a failed attempt: retry after ``countdown_s``, or give up (``reason``)."""

    retry: bool
    countdown_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """A delay schedule, a retry budget, jitter, and the errors that never retry.

    ``delays_s[n]`` is the wait before retry ``n + 1``; retries past the end of
    the schedule wait its last delay. ``max_retries=3`` means 4 attempts.
    ``jitter=0.1`` spreads each delay uniformly over +/- 10 %.
    """

    delays_s: tuple[float, ...]
    max_retries: int
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    never_retry: tuple[type[BaseException], ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, task: Any = None) -> RetryPolicy:
        """The settings' policy, overridden by a task's ``retry_delays_s``, ``max_retries``,
        ``retry_on`` and ``never_retry`` attributes where it sets them (None: settings)."""
        delays = getattr(task, "retry_delays_s", None)
        max_retries = getattr(task, "max_retries", None)
        return cls(
            delays_s=tuple(delays) if delays is not None else settings.retry_delays_s,
            max_retries=settings.max_retries if max_retries is None else int(max_retries),
            jitter=settings.retry_jitter,
            retry_on=tuple(getattr(task, "retry_on", None) or (Exception,)),
            never_retry=tuple(getattr(task, "never_retry", None) or ()),
        )

    def delay_s(self, retries: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before the next attempt of a task that has been retried ``retries`` times."""
        base = self.delays_s[min(retries, len(self.delays_s) - 1)]
        if not self.jitter:
            return base
        return max(0.0, base * (1 + self.jitter * (2 * rand() - 1)))

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, ALWAYS_FINAL + self.never_retry):
            return False
        return isinstance(exc, self.retry_on)

    def decide(
        self, exc: BaseException, retries: int, rand: Callable[[], float] = random.random
    ) -> RetryDecision:
        """Retry (with its countdown) or give up, for ``exc`` raised after ``retries`` retries."""
        if not self.is_retryable(exc):
            return RetryDecision(False, reason=f"{type(exc).__name__} is not retryable")
        if retries >= self.max_retries:
            attempts = retries + 1
            return RetryDecision(False, reason=f"gave up after {attempts} attempts")
        return RetryDecision(True, countdown_s=self.delay_s(retries, rand))


def delay_overrun_s(settings: Settings, delays: Sequence[float] | None = None) -> float | None:
    """The longest retry delay (jitter included) when it is not below the visibility timeout.

    The one visibility-timeout rule: Redis re-delivers any message left unacked
    past that timeout, countdown retries included, so such a delay runs the task
    twice. None when the schedule is safe.
    """
    schedule = tuple(delays) if delays else settings.retry_delays_s
    longest = max(schedule) * (1 + settings.retry_jitter)
    return longest if longest >= settings.visibility_timeout_s else None


def validate(
    settings: Settings,
    delays: Sequence[float] | None = None,
    source: str = "STACK_RETRY_DELAYS",
) -> None:
    """Refuse a schedule that the broker would break (see :func:`delay_overrun_s`)."""
    longest = delay_overrun_s(settings, delays)
    if longest is not None:
        jitter = ""
        if settings.retry_jitter:
            jitter = f" (with STACK_RETRY_JITTER={settings.retry_jitter:g})"
        raise SettingsError(
            f"retry delay of {longest:g} s{jitter} is not below the visibility timeout of "
            f"{settings.visibility_timeout_s} s: Redis would re-deliver the waiting retry and "
            f"run the task twice. Shorten {source} or raise STACK_VISIBILITY_TIMEOUT"
        )
