"""Overview: what waits in each queue, what workers hold, what died: for GET /queues and
`celery-stack status` (which renders it in stack.cli.tasks).

Depths are summed over every priority list of a queue (a plain LLEN sees one);
``unacked`` counts messages workers hold (running, prefetched, or waiting for a
countdown: retries and rate-limit deferrals).
"""

from __future__ import annotations

from celery import Celery
from pydantic import BaseModel

from stack import queues
from stack.checks.readiness import WORKER_PING_TIMEOUT_S, ping_workers
from stack.connection import REDIS_ERRORS, translated
from stack.context import context_of


class QueueOverview(BaseModel):
    """Depth per logical queue, unacked messages, dead letters (and workers, when asked)."""

    queues: dict[str, int]
    unacked: int
    dead_letters: int
    workers: list[str] | None = None

    @property
    def waiting(self) -> int:
        return sum(self.queues.values())


def queue_overview(
    app: Celery, workers: bool = False, ping_timeout_s: float = WORKER_PING_TIMEOUT_S
) -> QueueOverview:
    """Read the overview from Redis; ``workers=True`` also pings them (about a second)."""
    context = context_of(app)
    with translated(context.settings.broker_url, "the queue overview"):
        overview = QueueOverview(
            queues=queues.queue_depths(context.redis, context.settings),
            unacked=queues.unacked_count(context.redis),
            dead_letters=context.dead_letters.count(),
        )
    if workers:
        try:
            overview.workers = ping_workers(app, timeout_s=ping_timeout_s)
        except REDIS_ERRORS:
            overview.workers = []
    return overview
