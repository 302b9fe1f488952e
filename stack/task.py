"""StackTask: the base class of every task in a celery-stack app, and where its life is steered.

One delivery of a task goes: global rate-limit gate (over the limit: deferred,
not failed) -> redelivery cap (its worker died under it too often: dead letter
without running) -> run -> on error, the RetryPolicy decides: retry on the same
queue and priority after the scheduled delay, or dead letter (exactly once) and
re-raise so Celery records FAILURE. A hard time limit kills the pool child, so
its dead letter is written by the worker's main process (StackRequest). A
message that cannot even become a delivery (undecodable, too deep for the pool,
arguments that do not fit) never gets here: stack.poison dead-letters it first.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry
from celery.worker import state as worker_state
from celery.worker.request import Request

from stack import signals
from stack.connection import REDIS_ERRORS
from stack.context import StackContext, context_of
from stack.deadletter import DeadLetter
from stack.errors import RedeliveryLimitExceeded
from stack.queues import Priority, logical_name
from stack.ratelimit import Grant, Rate, RateLimiter, rate_for
from stack.redelivery import RedeliveryCounter
from stack.retry import RetryPolicy
from stack.settings import Settings

logger = logging.getLogger(__name__)

# Message headers the kit carries from one delivery of a task to the next.
RATE_SLOT_HEADER = "stack_rate_slot"  # the slot (Redis clock, s) a deferred task holds
FIRST_FAILURE_HEADER = "stack_first_failure_at"  # when attempt 1 failed (epoch s)
# A deferral longer than this is cut into legs: a message held unacked past the
# visibility timeout would be re-delivered (and run twice).
MAX_DEFER_FRACTION = 0.5
# A retry is published from the worker, which can wait ~10 s for Redis (a restart).
RETRY_PUBLISH_POLICY = {
    "max_retries": 20,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
PASS_THROUGH = (Retry, Ignore, Reject)  # Celery's own control flow, never a failure


def origin(delivery_info: dict[str, Any] | None) -> tuple[str | None, int]:
    """(physical queue, priority step) a message came from: a retry or deferral goes back there."""
    info = delivery_info or {}
    step = info.get("priority")
    return info.get("routing_key"), Priority.from_step(step).value


def carried_headers(headers: dict[str, Any] | None, **updates: Any) -> dict[str, Any]:
    """The custom headers to republish with: the caller's, minus a stale rate slot."""
    kept = {k: v for k, v in (headers or {}).items() if k != RATE_SLOT_HEADER}
    return {**kept, **updates}


class StackTask(Task):
    """Base task: settings and Redis at hand, retries, dead letters, global rate limit.

    A task may override, as class attributes: ``retry_delays_s`` and
    ``max_retries`` (None: from settings), ``retry_on`` / ``never_retry``
    (exception classes), ``global_rate_limit`` (e.g. ``"5/s"``; STACK_RATE_LIMITS wins).
    """

    abstract = True
    Request = "stack.task:StackRequest"
    max_retries: int | None = None  # None: STACK_MAX_RETRIES, applied by RetryPolicy
    retry_delays_s: tuple[float, ...] | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    never_retry: tuple[type[BaseException], ...] = ()
    global_rate_limit: str | None = None

    @property
    def context(self) -> StackContext:
        return context_of(self.app)

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def redis(self) -> redis.Redis[bytes]:
        return self.context.redis

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:  # a plain function call, not a delivery: no lifecycle
            return super().__call__(*args, **kwargs)
        settings = self.settings
        self._rate_gate(request, settings)
        self._redelivery_cap(request, settings)
        try:
            return self.run(*args, **kwargs)
        except PASS_THROUGH:
            raise
        except Exception as exc:
            self._handle_failure(request, settings, exc)
            raise

    # --- the gate: global rate limit ------------------------------------------------

    def _rate(self, settings: Settings) -> Rate | None:
        cached: tuple[Settings, Rate | None] | None = self.__dict__.get("_stack_rate")
        if cached is None or cached[0] is not settings:
            cached = (settings, rate_for(settings, self))
            self.__dict__["_stack_rate"] = cached
        return cached[1]

    def _rate_gate(self, request: Any, settings: Settings) -> None:
        rate = self._rate(settings)
        if rate is None:
            return
        reserved = request.get(RATE_SLOT_HEADER)  # custom headers become request attributes
        grant = RateLimiter(self.redis, settings).acquire_or_hold(self.name, rate, reserved)
        if not grant.granted:
            self._defer(request, settings, grant, max(0.0, grant.wait_s - rate.lead_s))
        request.stack_rate_granted_at = grant.at_s

    def _defer(self, request: Any, settings: Settings, grant: Grant, countdown_s: float) -> None:
        """Republish this very task (same id, same retry count) for its slot; ack this copy.

        A countdown message does not hold a prefetch slot (the worker raises its
        QoS for it), and it stays in Redis's unacked set until it runs: never lost.
        """
        wait_s = min(countdown_s, settings.visibility_timeout_s * MAX_DEFER_FRACTION)
        queue, priority = origin(request.delivery_info)
        headers = carried_headers(request.headers, **{RATE_SLOT_HEADER: grant.at_s})
        try:
            self.signature_from_request(
                request,
                countdown=wait_s,
                retries=request.retries,
                queue=queue,
                priority=priority,
                headers=headers,
            ).apply_async()
        except Exception as exc:  # could not republish: put the message back instead
            raise Reject(exc, requeue=True) from exc
        signals.task_rate_limited.send(sender=self.name, task_id=request.id, wait_s=wait_s)
        raise Ignore()

    # --- the redelivery cap -----------------------------------------------------------

    def _redelivery_cap(self, request: Any, settings: Settings) -> None:
        if not (request.delivery_info or {}).get("redelivered"):
            return
        seen = RedeliveryCounter(self.redis, settings).record(request.id, request.retries)
        if seen.count <= settings.max_redeliveries:
            return
        exc = RedeliveryLimitExceeded(
            f"worker lost {seen.count} times while running {self.name}[{request.id}] "
            f"(STACK_MAX_REDELIVERIES={settings.max_redeliveries}): dead-lettered without running"
        )
        self._dead_letter(
            request,
            settings,
            exc,
            reason=f"worker lost {seen.count} times",
            attempts=request.retries + seen.count,
            first_failure_at=seen.first_at,
        )
        raise exc

    # --- after a failed run: retry or dead letter ----------------------------------------

    def _handle_failure(self, request: Any, settings: Settings, exc: Exception) -> None:
        decision = RetryPolicy.from_settings(settings, self).decide(exc, request.retries)
        if not decision.retry:
            self._dead_letter(
                request,
                settings,
                exc,
                reason=decision.reason,
                attempts=request.retries + 1,
                first_failure_at=request.get(FIRST_FAILURE_HEADER) or time.time(),
            )
            return
        signals.task_retry_scheduled.send(
            sender=self.name,
            task_id=request.id,
            attempt=request.retries + 1,
            countdown_s=decision.countdown_s,
            exception=exc,
        )
        raise self.retry(exc=exc, countdown=decision.countdown_s)

    def retry(self, *args: Any, max_retries: int | None = None, **options: Any) -> Any:
        """Celery's retry, made safe for a task that calls ``self.retry()`` itself: the retry
        budget defaults to STACK_MAX_RETRIES (not unlimited), and the retry goes back to the
        queue and priority the task came from, remembering when it first failed."""
        request = self.request
        if max_retries is None and self.max_retries is None:
            max_retries = self.settings.max_retries
        if not request.called_directly:
            queue, priority = origin(request.delivery_info)
            options.setdefault("queue", queue)
            options.setdefault("priority", priority)
            first = request.get(FIRST_FAILURE_HEADER) or time.time()
            options["headers"] = carried_headers(
                options.get("headers", request.headers), **{FIRST_FAILURE_HEADER: first}
            )
            # A worker can wait for Redis longer than an API caller: ride out a restart.
            options.setdefault("retry_policy", RETRY_PUBLISH_POLICY)
        try:
            return super().retry(*args, max_retries=max_retries, **options)
        except Reject as rejection:
            if rejection.requeue or request.called_directly:
                raise
            if is_outage(rejection.reason):
                # Celery discards a task whose retry it could not publish. Redis did not
                # answer: put the message back instead; if even that fails, it waits in
                # Redis's unacked hash and comes back after the visibility timeout. Never lost.
                raise Reject(rejection.reason, requeue=True) from rejection
            # Refused for another reason (arguments that do not fit the task, an argument
            # the serializer cannot encode): every copy would be refused alike, so this is
            # final. Dead-letter it with the task's own error, not as a lost worker.
            failure = options.get("exc") or rejection.reason
            kind, message, _ = DeadLetter.describe(rejection.reason)
            self._dead_letter(
                request,
                self.settings,
                failure if isinstance(failure, BaseException) else rejection,
                reason=f"its retry was refused ({kind}: {message})",
                attempts=request.retries + 1,
                first_failure_at=request.get(FIRST_FAILURE_HEADER) or time.time(),
            )
            raise

    def _dead_letter(
        self,
        request: Any,
        settings: Settings,
        exc: BaseException,
        reason: str,
        attempts: int,
        first_failure_at: float,
    ) -> None:
        kind, message, trace = DeadLetter.describe(exc)
        record = dead_letter_for(
            request,
            self.name,
            settings,
            exception_type=kind,
            exception_message=message,
            traceback=trace,
            reason=reason,
            attempts=attempts,
            first_failure_at=float(first_failure_at),
            last_failure_at=time.time(),
        )
        store_dead_letter(self.app, record)


def is_outage(reason: object) -> bool:
    """Whether a retry Celery could not publish failed because Redis did not answer."""
    return isinstance(reason, REDIS_ERRORS)


def dead_letter_for(request: Any, name: str, settings: Settings, **failure: Any) -> DeadLetter:
    """The dead letter of one delivery of task ``name``; ``failure`` says how it failed.

    ``request`` is the task's context or the worker's Request: both carry the
    id, arguments, delivery info and hostname.
    """
    queue, priority = origin(request.delivery_info)
    return DeadLetter(
        task_id=request.id,
        name=name,
        args=list(request.args or ()),
        kwargs=dict(request.kwargs or {}),
        queue=logical_name(settings, queue),
        priority=Priority(priority).label,
        worker=request.hostname,
        **failure,
    )


def store_dead_letter(app: Celery, record: DeadLetter) -> bool:
    """Add ``record`` (once per task id) and tell the signal's receivers; never raise.

    A dead letter that cannot be written (Redis down) is logged and False is
    returned: the task's own failure must still reach Celery.
    """
    try:
        _, created = context_of(app).dead_letters.add(record)
    except Exception:
        logger.exception("could not store the dead letter of %s[%s]", record.name, record.task_id)
        return False
    if created:
        signals.task_dead_lettered.send(sender=record.name, record=record)
    return True


class StackRequest(Request):
    """The worker's request for a StackTask: dead-letters a task killed by its hard time limit.

    That kill happens in the worker's main process, where ``task.request`` is
    not the task's context; this request object still knows the delivery.
    """

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft or worker_state.should_terminate:
            return
        app = self.task.app
        headers = self.request_dict
        now = time.time()
        record = dead_letter_for(
            self,
            self.name,
            context_of(app).settings,
            exception_type="celery.exceptions.TimeLimitExceeded",
            exception_message=f"hard time limit ({timeout:g} s) exceeded",
            reason="hard time limit",
            attempts=int(headers.get("retries") or 0) + 1,
            first_failure_at=float(headers.get(FIRST_FAILURE_HEADER) or now),
            last_failure_at=now,
        )
        store_dead_letter(app, record)
