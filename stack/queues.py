"""Queues, priority levels and routing: where a task goes.

Redis has no native priorities: kombu splits each queue into one list per
priority step and, with ``queue_order_strategy='priority'``, drains the lowest
number first. So 0 is the HIGHEST priority, and Celery's default (0) would make
every unmarked task critical; we default to ``normal`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from celery.app.amqp import AMQP
from celery.app.routes import Router
from celery.exceptions import QueueNotFound
from kombu import Exchange, Queue

from stack.errors import UnknownQueue
from stack.settings import Settings

if TYPE_CHECKING:
    import redis

QUEUES = ("default", "file_processing", "query_processing", "maintenance")
DEFAULT_QUEUE = "default"

PRIORITY_STEPS = [0, 3, 6, 9]  # kombu's Redis priority lists, one per level
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's separator between queue name and step
UNACKED_KEY = "unacked"  # kombu's hash of delivered, not yet acked messages (ETA ones too)


class Priority(int, Enum):
    """The four named levels, as Redis priority steps (lower runs first)."""

    CRITICAL = 0
    HIGH = 3
    NORMAL = 6
    LOW = 9

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            return cls.from_step(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(p.name.lower() for p in cls)
            raise ValueError(f"unknown priority {value!r}: expected one of {names}") from None

    @classmethod
    def from_step(cls, step: int | None) -> Priority:
        """The level a raw Celery priority lands in (kombu rounds up to the next step)."""
        if step is None:
            return DEFAULT_PRIORITY
        for level in cls:
            if step <= level.value:
                return level
        return cls.LOW

    @property
    def label(self) -> str:
        return self.name.lower()


DEFAULT_PRIORITY = Priority.NORMAL

# Task name prefix -> queue. Anything else goes to `default`.
ROUTES = {
    "files.*": "file_processing",
    "queries.*": "query_processing",
    "maintenance.*": "maintenance",
}


def physical_name(settings: Settings, logical: str) -> str:
    """The name workers consume for a logical queue (STACK_QUEUE_PREFIX isolates tests)."""
    return f"{settings.queue_prefix}{logical}"


def logical_name(settings: Settings, physical: str | None) -> str:
    """The logical name of a physical queue (``default`` when a delivery names none)."""
    return physical.removeprefix(settings.queue_prefix) if physical else DEFAULT_QUEUE


def queue_name(settings: Settings, queue: str) -> str:
    """The physical name of one of the stack's QUEUES; UnknownQueue for any other name."""
    if queue not in QUEUES:
        raise UnknownQueue(queue, QUEUES)
    return physical_name(settings, queue)


def physical_names(settings: Settings, logical: Sequence[str] = QUEUES) -> list[str]:
    """Physical names of ``logical`` queues (all of them by default): a worker's ``-Q``."""
    return [queue_name(settings, name) for name in logical]


def declarations(settings: Settings) -> list[Queue]:
    """The reference app's ``task_queues``: one direct exchange per queue, named alike."""
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name)
        for name in physical_names(settings)
    ]


class UndeclaredQueue(QueueNotFound, UnknownQueue):  # type: ignore[misc]  # Celery: untyped
    """A publish to a queue the app does not declare, refused at once (never PENDING for ever).

    Celery's own QueueNotFound (a KeyError), so code catching that still does; a
    StackError, so the CLI and the API answer it like an unknown queue in submit.
    """

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        UnknownQueue.__init__(self, name, known)

    def __str__(self) -> str:  # KeyError's str() would quote the whole message
        return str(self.args[0])


class RefusingRouter(Router):  # type: ignore[misc]  # Celery: untyped
    """Celery's router, whose QueueNotFound names the declared queues and the priority fix."""

    def expand_destination(self, route: Any) -> Any:
        name = route if isinstance(route, str) else (route or {}).get("queue")
        try:
            return super().expand_destination(route)
        except QueueNotFound as exc:
            if isinstance(exc, UndeclaredQueue):
                raise
            raise UndeclaredQueue(str(name), tuple(self.queues)) from None


class StackAMQP(AMQP):  # type: ignore[misc]  # Celery: untyped
    """The reference app's AMQP: with ``task_create_missing_queues=False`` an undeclared
    queue (a typo, or a seed's ``queue="normal"``) raises :class:`UndeclaredQueue` at once."""

    def Router(self, queues: Any = None, create_missing: bool | None = None) -> Router:
        return RefusingRouter(
            self.routes,
            queues or self.queues,
            self.app.either("task_create_missing_queues", create_missing),
            app=self.app,
        )


def is_reference(app: Any) -> bool:
    """Whether ``app`` is the reference app (its queues are QUEUES, named logically)."""
    return isinstance(app.amqp, StackAMQP)


def priority_lists(physical_queue: str) -> list[str]:
    """Every Redis list kombu uses for one queue: depth is the sum over all of them."""
    return [
        f"{physical_queue}{PRIORITY_SEPARATOR}{step}" if step else physical_queue
        for step in PRIORITY_STEPS
    ]


def task_routes(settings: Settings) -> dict[str, dict[str, Any]]:
    return {pattern: {"queue": queue_name(settings, q)} for pattern, q in ROUTES.items()}


def route_for(task_name: str) -> str:
    """The logical queue a task name routes to."""
    for pattern, queue in ROUTES.items():
        if task_name.startswith(pattern.rstrip("*")):
            return queue
    return DEFAULT_QUEUE


def queue_depths(
    client: redis.Redis[bytes], settings: Settings, names: dict[str, str] | None = None
) -> dict[str, int]:
    """Messages waiting in each queue, summed over its priority lists (one round trip).

    ``names`` maps the name shown to the physical queue (default: the reference app's
    logical QUEUES). A plain LLEN of the queue name sees only the ``critical`` list.
    Messages a worker holds (running, prefetched, waiting for a countdown) are unacked
    instead: see :func:`unacked_count`.
    """
    shown = names if names is not None else {q: physical_name(settings, q) for q in QUEUES}
    pipe = client.pipeline(transaction=False)
    for queue in shown.values():
        for key in priority_lists(queue):
            pipe.llen(key)
    counts = iter(pipe.execute())
    return {name: sum(int(next(counts)) for _ in PRIORITY_STEPS) for name in shown}


def unacked_count(client: redis.Redis[bytes]) -> int:
    """Messages delivered to workers and not yet acked, over the whole Redis database."""
    return int(client.hlen(UNACKED_KEY))
