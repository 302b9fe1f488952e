"""Overview: what waits in each queue, what workers hold, what died: for GET /queues and
`celery-stack status`.

Depths are summed over every priority list of a queue (a plain LLEN sees one);
``unacked`` counts messages workers hold (running, prefetched, or waiting for a
countdown: retries and rate-limit deferrals).
"""

from __future__ import annotations

from celery import Celery
from pydantic import BaseModel

from stack import queues
from stack.deadletter import DeadLetterStore
from stack.errors import BrokerUnavailable
from stack.readiness import ping_workers
from stack.status import REDIS_ERRORS
from stack.submit import redact
from stack.task import redis_of, settings_of

WORKER_PING_TIMEOUT_S = 1.0  # an idle worker answers a broadcast ping within a few ms


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
    settings = settings_of(app)
    client = redis_of(app)
    try:
        overview = QueueOverview(
            queues=queues.queue_depths(client, settings),
            unacked=queues.unacked_count(client),
            dead_letters=DeadLetterStore(client, settings).count(),
        )
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(
            f"Redis at {redact(settings.broker_url)} did not answer ({exc}); is it running? "
            "Check REDIS_URL"
        ) from exc
    if workers:
        overview.workers = ping_workers(app, timeout_s=ping_timeout_s)
    return overview


def render_overview(overview: QueueOverview) -> str:
    """A plain-text table: one line per queue, then the totals."""
    width = max(len(name) for name in [*overview.queues, "dead letters"])
    lines = [f"{'queue':<{width}}  waiting"]
    lines += [f"{name:<{width}}  {depth:>7}" for name, depth in overview.queues.items()]
    lines += [
        f"{'unacked':<{width}}  {overview.unacked:>7}",
        f"{'dead letters':<{width}}  {overview.dead_letters:>7}",
    ]
    if overview.workers is not None:
        names = ", ".join(overview.workers) or "none answered ping"
        lines.append(f"workers ({len(overview.workers)}): {names}")
    return "\n".join(lines)
