"""Give back promptly what a dead worker held, instead of after the visibility timeout.

kombu's Redis transport emulates acks: a delivered message moves to the
``unacked`` hash (delivery tag -> ``[message, exchange, routing_key]``) and
its tag to the ``unacked_index`` sorted set, scored by the delivery's epoch
time. A worker that dies without a warm shutdown (SIGKILL, OOM) leaves its
messages there, and Redis re-delivers them only once they are older than the
visibility timeout (an hour by default). No field names the consumer, so
which entries the dead worker held is decided like this:

1. **delivered while it lived**: index score between its spawn and its death.
   A worker cannot hold a message delivered before it started or after it died
   (its successor's deliveries are newer than the death);
2. **from its queues**: the exchange or routing key is one of the queues `up`
   told it to consume (the reference app names both after the queue);
3. **no live worker holds it**: the task ids left are sent in one
   ``query_task`` broadcast, which every live worker answers for the requests
   it holds (running, prefetched, waiting for an ETA or a countdown); those
   are left alone.

What remains goes back through kombu's own ``restore_by_tag`` (one
transaction per tag, WATCHing the hash: a message acked meanwhile is not
pushed back), marked ``redelivered``, so the redelivery cap still counts the
death. The one case this can get wrong is a live worker consuming the same
queues that does not answer within ``QUERY_TIMEOUT_S`` (a solo pool busy with
a long task): its messages delivered during the dead worker's life would run
twice. `up`'s own stack has one worker, so there is nobody else to ask.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stack.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

QUERY_TIMEOUT_S = 1.0  # a live worker answers a control query in milliseconds; wait that long
CLOCK_SLACK_S = 0.5  # the index scores are the worker's clock, the window is ours (same host)


@dataclass(frozen=True)
class Held:
    """One unacked entry: its delivery tag and the task id inside."""

    tag: str
    task_id: str | None


@dataclass
class UnackedReclaimer:
    """Requeues the unacked messages of a dead worker of ``queues`` (see the module doc)."""

    settings: Settings
    queues: Sequence[str]
    query_timeout_s: float = QUERY_TIMEOUT_S
    _app: Celery | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def warm(self) -> None:
        with self._lock:
            if self._app is None:
                from stack.app_factory import load_app  # ~0.4 s of imports, off the main loop

                self._app = load_app(self.settings)

    def close(self) -> None:
        if self._app is not None:
            self._app.close()

    def reclaim(self, since: float, until: float) -> str:
        self.warm()
        assert self._app is not None
        with self._app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            for queue in self._app.amqp.queues.values():  # exchange types, for the lookup
                queue.exchange(channel).declare()
            with channel.conn_or_acquire() as client:
                candidates = self._candidates(channel, client, since, until)
                if not candidates:
                    return ""
                held = self._held_by_live_workers(candidates)
                restored = 0
                for entry in candidates:
                    if entry.task_id not in held:
                        channel.qos.restore_by_tag(entry.tag, client)
                        restored += 1
        kept = len(candidates) - restored
        others = f"; {kept} held by live workers left alone" if kept else ""
        return (
            f"requeued {restored} message{'s' if restored != 1 else ''} its predecessor held "
            f"unacked{others}"
        )

    def _candidates(self, channel: Any, client: Any, since: float, until: float) -> list[Held]:
        """Unacked entries delivered during the dead worker's life, from its queues."""
        tags = client.zrangebyscore(
            channel.unacked_index_key, since - CLOCK_SLACK_S, until + CLOCK_SLACK_S
        )
        if not tags:
            return []
        wanted = set(self.queues)
        found = []
        for tag, raw in zip(tags, client.hmget(channel.unacked_key, tags), strict=True):
            if raw is None:  # acked since
                continue
            message, exchange, routing_key = json.loads(raw)
            if exchange in wanted or routing_key in wanted:
                task_id = (message.get("headers") or {}).get("id")
                found.append(Held(_text(tag), task_id))
        return found

    def _held_by_live_workers(self, candidates: list[Held]) -> set[str]:
        """Task ids among ``candidates`` that some live worker reports holding."""
        assert self._app is not None
        ids = sorted({c.task_id for c in candidates if c.task_id})
        if not ids:
            return set()
        replies = self._app.control.inspect(timeout=self.query_timeout_s).query_task(*ids)
        return {task_id for held in (replies or {}).values() for task_id in held or {}}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
