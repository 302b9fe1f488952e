"""submit() and replay(): the one way a task enters Redis, for the API, the CLI, tests and Locust.

A task id is returned only for a message Redis has stored; a Redis that does
not take it within the publish timeout is a BrokerUnavailable, never a hang.
A dead letter is replayed exactly once, through its claim in the DeadLetterStore.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery

from stack import direct, queues
from stack.arguments import check_depth
from stack.connection import REDIS_ERRORS, redact, translated, unavailable
from stack.context import context_of
from stack.deadletter import CLAIMED, REPLAYED, DeadLetterStore
from stack.discovery import app_queues, queue_name
from stack.errors import (
    BrokerUnavailable,
    DeadLetterNotFound,
    ReplayInProgress,
    UnknownQueue,
    UnknownTask,
)
from stack.queues import Priority
from stack.settings import Settings

logger = logging.getLogger(__name__)

REPLAY_POLL_S = 0.05  # how often a replay waiting on another caller's claim looks again
REPLAY_WAIT_MARGIN_S = 1.0  # past the claim timeout, when a waiting replay takes the claim over


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

    ``queue`` None: the task's route. For the reference app a logical queue name
    (``default``, ...); for a user's app one of the app's own queues, and the route
    is the app's own (the task's ``queue=``, then ``task_routes``, then the default
    queue), as ``task.apply_async()`` would pick. ``task_id`` None: a new one.
    Raises UnknownTask for a name the app does not register, UnknownQueue for a
    queue no worker of the app consumes, ArgumentsTooDeep for arguments nested past
    MAX_ARGUMENT_DEPTH, and BrokerUnavailable when Redis does not take the message
    within the publish timeout. STACK_EXECUTION=direct runs the task in this process
    instead (:mod:`stack.direct`; ``countdown_s`` and the queue are then moot), and
    ``auto`` does so, with a warning, whenever the broker does not answer.
    """
    settings = context_of(app).settings
    if name not in app.tasks:
        raise UnknownTask(name)
    check_depth(args, kwargs or {})
    level = Priority.parse(priority)
    physical = destination(app, settings, name, queue)
    if settings.execution == "direct":
        return direct.start(app, settings, name, args, kwargs or {}, task_id or str(uuid.uuid4()))
    if settings.execution == "auto" and not direct.broker_answers(settings):
        return _fall_back(app, settings, name, args, kwargs, task_id, "does not answer PING")
    try:
        return _publish(app, settings, name, args, kwargs, physical, level, countdown_s, task_id)
    except BrokerUnavailable as exc:
        if settings.execution != "auto":
            raise
        return _fall_back(app, settings, name, args, kwargs, task_id, str(exc))


def _fall_back(
    app: Celery,
    settings: Settings,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    task_id: str | None,
    why: str,
) -> str:
    """STACK_EXECUTION=auto with the broker down: run it here, and say so every time."""
    task_id = task_id or str(uuid.uuid4())
    logger.warning(
        "STACK_EXECUTION=auto: broker %s %s; running %s[%s] directly in this process "
        "(no retries, no dead letter)",
        redact(settings.broker_url),
        why,
        name,
        task_id,
    )
    return direct.start(app, settings, name, args, kwargs or {}, task_id)


def _publish(
    app: Celery,
    settings: Settings,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    physical: str,
    level: Priority,
    countdown_s: float | None,
    task_id: str | None,
) -> str:
    # The reference app's exchanges are named after their queues; a user's app may route
    # by exchange and routing key: its Queue (from its task_queues) carries both.
    routing = {"routing_key": physical} if queues.is_reference(app) else {}
    try:
        result = app.send_task(
            name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            queue=physical,
            **routing,
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


def destination(app: Celery, settings: Settings, name: str, queue: str | None) -> str:
    """The queue ``name`` is published to: see :func:`submit`."""
    if queues.is_reference(app):
        return queues.queue_name(settings, queue or queues.route_for(name))
    if queue is not None:
        known = app_queues(app)
        # A router function decides at publish time: its queues cannot be listed, so trust.
        if queue not in known.names and not known.notes:
            raise UnknownQueue(queue, known.names)
        return queue
    return route_of(app, name)


def route_of(app: Celery, name: str) -> str:
    """The queue the app's own router picks for task ``name``, with the task's own options.

    ``app.amqp.router.route({}, name)`` alone misses a task's ``queue=`` (Celery merges
    the task's options in ``apply_async``, before routing): they are passed in here.
    """
    task = app.tasks[name]
    own = getattr(task, "queue", None)
    options: dict[str, Any] = {} if own is None else {"queue": own}
    route = app.amqp.router.route(options, name, task_type=task)
    found = queue_name(route.get("queue"))
    return found or str(app.conf.task_default_queue)


@dataclass(frozen=True)
class Replayed:
    """A dead letter's one replay: its task id, and whether this call published it."""

    record_id: str
    task_id: str
    created: bool  # False: an earlier or a concurrent call published it


def replay(app: Celery, record_id: str) -> str:
    """Replay a dead letter exactly once; return the task id of its replay (see replay_record)."""
    return replay_record(app, record_id).task_id


def replay_record(app: Celery, record_id: str) -> Replayed:
    """Publish a dead letter's task again, to its original queue and priority, exactly once.

    The first call claims the record in Redis and publishes it under a new task id;
    every other call, concurrent or later, answers that same task id and publishes
    nothing (a concurrent one waits until the publish is done). A publish that fails
    releases the claim and raises: the record can be replayed later. A claim whose
    replayer died is taken over after the store's claim timeout, under its task id.
    Raises DeadLetterNotFound, BrokerUnavailable, and ReplayInProgress when another
    call's publish outlasts that timeout. The record stays, noting its replay.
    """
    context = context_of(app)
    store, url = context.dead_letters, context.settings.broker_url
    deadline = time.monotonic() + store.claim_timeout_s + REPLAY_WAIT_MARGIN_S
    while True:
        with translated(url, f"the replay of dead letter {record_id}"):
            claim = store.claim_replay(record_id, str(uuid.uuid4()))
        if claim.state == CLAIMED:
            return Replayed(record_id, _publish_claimed(app, store, record_id, claim.task_id), True)
        if claim.state == REPLAYED:
            return Replayed(record_id, claim.task_id, False)
        if time.monotonic() > deadline:
            raise ReplayInProgress(
                f"dead letter {record_id} is being replayed as task {claim.task_id} by another "
                f"call that has not finished in {store.claim_timeout_s:g} s; try again later"
            )
        time.sleep(REPLAY_POLL_S)


def replay_all(
    app: Celery, on_each: Callable[[int, int], None] | None = None
) -> list[tuple[str, str]]:
    """Replay every record not replayed yet, each exactly once: a record that another call
    has replayed or is replaying is skipped, so concurrent runs share the records out.

    Returns the (record id, new task id) pairs this call published, oldest record first;
    ``on_each(done, total)`` before each record and once at the end (the CLI's progress).
    """
    context = context_of(app)
    store = context.dead_letters
    published = []
    with translated(context.settings.broker_url, "the replay of every dead letter"):
        waiting = [r for r in reversed(store.page(0, store.count())) if not r.replays]
        for done, record in enumerate(waiting):
            if on_each is not None:
                on_each(done, len(waiting))
            try:
                claim = store.claim_replay(record.id, str(uuid.uuid4()))
            except DeadLetterNotFound:  # deleted meanwhile
                continue
            if claim.state == CLAIMED:
                published.append(
                    (record.id, _publish_claimed(app, store, record.id, claim.task_id))
                )
    if on_each is not None:
        on_each(len(waiting), len(waiting))
    return published


def _publish_claimed(app: Celery, store: DeadLetterStore, record_id: str, task_id: str) -> str:
    """Publish the replay this caller claimed, under ``task_id``; release the claim on failure."""
    url = context_of(app).settings.broker_url
    try:
        with translated(url, f"the replay of dead letter {record_id}"):
            record = store.get(record_id)
        submit(
            app,
            record.name,
            args=record.args,
            kwargs=record.kwargs,
            priority=record.priority,
            queue=record.queue,
            task_id=task_id,
        )
    except BaseException:
        try:
            store.release_replay(record_id, task_id)
        except REDIS_ERRORS:  # Redis is down: the claim times out instead, nothing is lost
            logger.warning("replay claim of %s left to time out", record_id)
        raise
    try:
        store.commit_replay(record_id, task_id)
    except REDIS_ERRORS:  # published, but not noted: a replay after the claim timeout repeats it
        logger.exception("replay of %s published as %s but not recorded", record_id, task_id)
    return task_id


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
