"""submit(): the one way a task enters the stack, for the API, the CLI, tests and Locust."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kombu.exceptions
import redis
from celery import Celery

from stack import queues
from stack.errors import BrokerUnavailable, UnknownTask
from stack.queues import Priority
from stack.task import settings_of

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def submit(
    app: Celery,
    name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    priority: str | int | Priority = queues.DEFAULT_PRIORITY,
    queue: str | None = None,
    countdown_s: float | None = None,
) -> str:
    """Publish task ``name`` to its queue at ``priority``; return the task id.

    ``queue`` is a logical queue name (None: the task's route). Raises
    UnknownTask for a name the app does not register and BrokerUnavailable
    when Redis does not take the message within the publish timeout: a task id
    is returned only for a message Redis has stored.
    """
    settings = settings_of(app)
    if name not in app.tasks:
        raise UnknownTask(name)
    level = Priority.parse(priority)
    logical = queue or queues.route_for(settings, name)
    physical = queues.queue_name(settings, logical)
    try:
        result = app.send_task(
            name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            queue=physical,
            routing_key=physical,
            priority=level.value,
            countdown=countdown_s,
            retry=True,
            retry_policy={"errback": publish_deadline(settings.publish_timeout_s)},
        )
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(
            f"Redis at {redact(settings.broker_url)} did not accept the task "
            f"within {settings.publish_timeout_s:g} s ({exc}); is it running? "
            "Check REDIS_URL / CELERY_BROKER_URL"
        ) from exc
    return str(result.id)


def publish_deadline(timeout_s: float) -> Callable[[BaseException, float], None]:
    """A kombu retry errback that gives up once ``timeout_s`` have passed.

    kombu counts publish retries, not seconds: against a Redis that accepts TCP
    but never answers (stopped, partitioned) each retry costs a socket timeout,
    so a count alone lets one publish hang for minutes.
    """
    deadline = time.monotonic() + timeout_s

    def give_up_after_deadline(exc: BaseException, interval_s: float) -> None:
        if time.monotonic() + (interval_s or 0) >= deadline:
            raise exc

    return give_up_after_deadline


def redact(url: str) -> str:
    """A broker URL fit for an error message: the password replaced."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}"
