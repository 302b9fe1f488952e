"""submit() and replay(): the one way a task enters Redis, for the API, the CLI, tests and Locust.

A task id is returned only for a message Redis has stored; a Redis that does
not take it within the publish timeout is a BrokerUnavailable, never a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Celery

from stack import queues
from stack.arguments import check_depth
from stack.connection import REDIS_ERRORS, unavailable
from stack.context import context_of
from stack.deadletter import Replay
from stack.errors import UnknownTask
from stack.queues import Priority


def submit(
    app: Celery,
    name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    priority: str | int | Priority = queues.DEFAULT_PRIORITY,
    queue: str | None = None,
    countdown_s: float | None = None,
    task_id: str | None = None,
) -> str:
    """Publish task ``name`` to its queue at ``priority``; return the task id.

    ``queue`` is a logical queue name (None: the task's route); ``task_id`` None:
    a new one. Raises UnknownTask for a name the app does not register,
    ArgumentsTooDeep for arguments nested past MAX_ARGUMENT_DEPTH, and
    BrokerUnavailable when Redis does not take the message within the publish timeout.
    """
    settings = context_of(app).settings
    if name not in app.tasks:
        raise UnknownTask(name)
    check_depth(args, kwargs or {})
    level = Priority.parse(priority)
    physical = queues.queue_name(settings, queue or queues.route_for(name))
    try:
        result = app.send_task(
            name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            queue=physical,
            routing_key=physical,
            priority=level.value,
            countdown=countdown_s,
            task_id=task_id,
            retry=True,
            retry_policy={"errback": publish_deadline(settings.publish_timeout_s)},
        )
    except REDIS_ERRORS as exc:
        raise unavailable(
            exc,
            settings.broker_url,
            f"within {settings.publish_timeout_s:g} s: the task was not queued",
            "REDIS_URL / CELERY_BROKER_URL",
        ) from exc
    return str(result.id)


def replay(app: Celery, record_id: str) -> str:
    """Publish a dead letter's task again, to its original queue and priority; return the new id.

    The record stays, noting the replay, so its history survives a second failure.
    """
    store = context_of(app).dead_letters
    record = store.get(record_id)
    new_id = submit(
        app,
        record.name,
        args=record.args,
        kwargs=record.kwargs,
        priority=record.priority,
        queue=record.queue,
    )
    store.note_replay(record_id, Replay(task_id=new_id, at=time.time()))
    return new_id


def replay_all(app: Celery) -> list[tuple[str, str]]:
    """Replay every record not replayed yet (a second run publishes nothing twice).

    Returns (record id, new task id) pairs, oldest record first.
    """
    store = context_of(app).dead_letters
    pending = [r for r in reversed(store.page(0, store.count())) if not r.replays]
    return [(record.id, replay(app, record.id)) for record in pending]


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
