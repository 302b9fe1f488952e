"""Overview: what waits in each queue, what workers hold, what died: for GET /queues and
`celery-stack status` (which renders it in stack.cli.tasks).

Depths are summed over every priority list of a queue (a plain LLEN sees one);
``unacked`` counts messages workers hold (running, prefetched, or waiting for a
countdown: retries and rate-limit deferrals). The queues are the app's: the
reference app's four (by logical name), or every queue a user's app sends to.
``unconsumed`` names the queues that hold messages while no worker consumes them
(they would wait for ever): asked of the workers (``inspect active_queues``, one
timeout) only when some queue holds messages.
"""

from __future__ import annotations

from celery import Celery
from pydantic import BaseModel, Field

from stack import queues
from stack.checks.readiness import WORKER_PING_TIMEOUT_S, active_queues, ping_workers
from stack.connection import REDIS_ERRORS, translated
from stack.context import context_of
from stack.discovery import app_queues

CONSUMERS_TIMEOUT_S = 0.5  # GET /queues waits this long for workers, and only with a backlog


class QueueOverview(BaseModel):
    """Depth per queue, unacked messages, dead letters (and workers, when asked)."""

    queues: dict[str, int]
    unacked: int
    dead_letters: int
    workers: list[str] | None = None
    unconsumed: list[str] | None = Field(
        default_factory=list,
        description="queues holding messages that no worker consumes (null: workers not asked "
        "because Redis failed the question)",
    )

    @property
    def waiting(self) -> int:
        return sum(self.queues.values())


def queue_names(app: Celery) -> dict[str, str]:
    """The app's queues: name shown -> physical queue (the reference app's are logical)."""
    settings = context_of(app).settings
    if queues.is_reference(app):
        return {name: queues.physical_name(settings, name) for name in queues.QUEUES}
    return {name: name for name in app_queues(app).names}


def queue_overview(
    app: Celery,
    workers: bool = False,
    ping_timeout_s: float = WORKER_PING_TIMEOUT_S,
    consumers_timeout_s: float = CONSUMERS_TIMEOUT_S,
) -> QueueOverview:
    """Read the overview from Redis; ``workers=True`` also pings them (about a second)."""
    context = context_of(app)
    names = queue_names(app)
    with translated(context.settings.broker_url, "the queue overview"):
        overview = QueueOverview(
            queues=queues.queue_depths(context.redis, context.settings, names),
            unacked=queues.unacked_count(context.redis),
            dead_letters=context.dead_letters.count(),
        )
    if workers:
        try:
            overview.workers = ping_workers(app, timeout_s=ping_timeout_s)
        except REDIS_ERRORS:
            overview.workers = []
    waiting = [name for name, depth in overview.queues.items() if depth]
    if waiting:
        overview.unconsumed = unconsumed_of(app, names, waiting, consumers_timeout_s)
    return overview


def unconsumed_of(
    app: Celery, names: dict[str, str], waiting: list[str], timeout_s: float
) -> list[str] | None:
    """Which of the ``waiting`` queues no worker consumes (None: the workers could not be
    asked)."""
    try:
        by_worker = active_queues(app, timeout_s)
    except REDIS_ERRORS:
        return None
    consumed = {name for queue_list in by_worker.values() for name in queue_list}
    return [name for name in waiting if names[name] not in consumed]
