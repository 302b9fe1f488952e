"""The poison guard: a message the worker cannot decode, hand to its pool, or call with its
arguments is dead-lettered once, in the worker's main process, before the pool sees it.

Celery's strategy for a task (``Task.Strategy``) decodes each message in the
worker's main process, and the prefork pool pickles its arguments there for a
child. A body that is not ``[args, kwargs, embed]``, or arguments nested past the
pickler's recursion limit, raise inside the consumer, where Celery exits the
whole worker ("Unrecoverable error"); with acks_late the message comes back and
kills the next worker too (the class of celery #4411). A body that does not
decode, or of a content type the worker refuses, is dropped with a log line.
Arguments that do not fit the task's signature fail in the child like any
retryable error. Each of those is one dead letter here, with the true exception,
and the message is acked; every other message runs Celery's strategy untouched.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task, signals
from celery.app.task import Context
from celery.exceptions import InvalidTaskError
from celery.utils.saferepr import saferepr
from celery.worker.strategy import default
from kombu.exceptions import ContentDisallowed, DecodeError

from stack.arguments import check_depth
from stack.context import context_of, find_context
from stack.deadletter import DeadLetter
from stack.errors import ArgumentsTooDeep
from stack.task import FIRST_FAILURE_HEADER, dead_letter_for, store_dead_letter

logger = logging.getLogger(__name__)

GUARDED_STRATEGY = "stack.poison:guarded_strategy"
CELERY_STRATEGY = "celery.worker.strategy:default"
# What Celery's own strategy raises for a message it refuses (and then drops without a trace).
REFUSED = (InvalidTaskError, ContentDisallowed, DecodeError)
BODY_REPR_CHARS = 200  # of a malformed body, in its dead letter's message

UNDECODABLE = "message cannot be decoded"
TOO_DEEP = "arguments nested too deep"
MISFIT = "arguments do not fit the task"


@dataclass(frozen=True)
class Poison:
    """Why a message cannot run, and its arguments as far as they are safe to keep."""

    error: BaseException
    reason: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """What :func:`stack.task.dead_letter_for` reads of a delivery that never became a request."""

    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    delivery_info: dict[str, Any]
    hostname: str


def install(app: Celery) -> None:
    """Guard every task of ``app`` now, and again when a worker starts (``--include`` modules
    register their tasks after the app is built, before the worker reads the strategies)."""
    guard_tasks(app)
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="stack.poison.guard")


def guard_tasks(app: Celery) -> None:
    """Put the guard in front of each task on Celery's default strategy (a custom one is kept)."""
    for task in app.tasks.values():
        if task.Strategy == CELERY_STRATEGY:
            task.Strategy = GUARDED_STRATEGY


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if app is not None and find_context(app) is not None:
        guard_tasks(app)


def guarded_strategy(task: Task, app: Celery, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's default strategy for ``task``, behind the poison guard (``Task.Strategy``)."""
    handle = default(task, app, consumer, **options)
    errors = consumer.connection_errors

    def guarded(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> Any:
        poison = find_poison(message, body, task)
        if poison is None:
            try:
                return handle(message, body, ack, reject, callbacks, **kw)
            except REFUSED as exc:  # e.g. an ETA that is no date
                poison = Poison(exc, UNDECODABLE)
        try:
            stored = dead_letter_poison(app, task, message, poison, consumer.hostname)
        except Exception:  # a bug here must not exit the worker either; requeueing would loop
            logger.critical("poison message dropped, not dead-lettered: %r", message, exc_info=True)
            stored = True
        if stored:
            ack(logger, errors)
        else:  # not recorded (Redis down): put it back rather than lose it
            reject(logger, errors, True)
        return None

    return guarded


def find_poison(message: Any, body: Any, task: Task) -> Poison | None:
    """Why the message cannot run, or None: it decodes, its arguments fit the pool and the task.

    ``body`` is the payload Celery decoded for a protocol-1 message, None for protocol 2.
    """
    try:
        # Decoded once: kombu keeps the payload for the request Celery builds next.
        payload = message.payload if body is None else body
        args, kwargs = arguments_of(payload)
        if task_id_of(message, payload) is None:
            raise InvalidTaskError("message carries no task id")
    except Exception as exc:  # DecodeError, ContentDisallowed, InvalidTaskError, a codec's own
        return Poison(exc, UNDECODABLE)
    try:
        check_depth(args, kwargs, message.headers)
    except ArgumentsTooDeep as exc:  # the arguments are not kept: no reader could load them
        return Poison(exc, TOO_DEEP)
    signature = getattr(task, "__header__", None) if task.typing else None
    if signature is not None:
        try:
            signature(*args, **kwargs)  # Celery's own argument check, as apply_async runs it
        except TypeError as exc:
            return Poison(exc, MISFIT, args, kwargs)
    return None


def arguments_of(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """(args, kwargs) of a decoded body: protocol 2's ``[args, kwargs, embed]`` or a
    protocol-1 mapping. InvalidTaskError for any other shape, where Celery would crash."""
    if isinstance(payload, dict) and "args" in payload:
        args, kwargs, embed = payload["args"], payload.get("kwargs", {}), None
    elif isinstance(payload, list | tuple) and len(payload) == 3:
        args, kwargs, embed = payload
    else:
        args = kwargs = embed = None
    if not (
        isinstance(args, list | tuple)
        and isinstance(kwargs, dict)
        and isinstance(embed, dict | None)
    ):
        shown = saferepr(payload, maxlen=BODY_REPR_CHARS)
        raise InvalidTaskError(f"message body is not [args, kwargs, embed]: {shown}")
    return list(args), dict(kwargs)


def task_id_of(message: Any, payload: Any = None) -> str | None:
    """The task id of a message: its header (protocol 2) or its body (protocol 1)."""
    task_id = (message.headers or {}).get("id")
    if task_id is None and isinstance(payload, dict):
        task_id = payload.get("id")
    return None if task_id is None else str(task_id)


def dead_letter_poison(
    app: Celery, task: Task, message: Any, poison: Poison, hostname: str
) -> bool:
    """Dead-letter the message (once per task id) and record Celery's FAILURE; False when
    the dead letter could not be written."""
    headers = message.headers or {}
    properties = message.properties or {}
    delivery = Delivery(
        id=task_id_of(message) or f"no-id-{uuid.uuid4().hex}",
        args=poison.args,
        kwargs=poison.kwargs,
        delivery_info={  # what the message says, as far as it makes sense
            "routing_key": (message.delivery_info or {}).get("routing_key"),
            "priority": _number(properties.get("priority"), None, int),
        },
        hostname=hostname,
    )
    kind, text, trace = DeadLetter.describe(poison.error)
    logger.error(
        "poison message %s[%s] dead-lettered without running: %s: %s (%s)",
        task.name,
        delivery.id,
        kind,
        text,
        poison.reason,
    )
    now = time.time()
    record = dead_letter_for(
        delivery,
        task.name,
        context_of(app).settings,
        exception_type=kind,
        exception_message=text,
        traceback=trace,
        reason=poison.reason,
        attempts=(_number(headers.get("retries"), 0, int) or 0) + 1,
        first_failure_at=_number(headers.get(FIRST_FAILURE_HEADER), now, float),
        last_failure_at=now,
    )
    if not store_dead_letter(app, record):
        return False
    record_failure(task, delivery, poison.error)
    return True


def record_failure(task: Task, delivery: Delivery, error: BaseException) -> None:
    """Celery's FAILURE for the task id, as any dead-lettered task has (best effort)."""
    request = Context(
        id=delivery.id,
        task=task.name,
        args=delivery.args,
        kwargs=delivery.kwargs,
        hostname=delivery.hostname,
        delivery_info=delivery.delivery_info,
    )
    try:
        task.backend.mark_as_failure(delivery.id, error, request=request)
    except Exception:
        logger.exception("could not store the FAILURE of poison message %s", task.name)


def _number(value: Any, default: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as ``kind``, or ``default`` for a header a foreign producer got wrong."""
    try:
        return default if value is None else kind(value)
    except (TypeError, ValueError, OverflowError):
        return default
