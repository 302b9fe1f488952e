"""RedeliveryCounter: how many times a task's worker died under it.

With ``acks_late`` + ``task_reject_on_worker_lost`` a task whose worker dies is
put back and run again: safe for a crash, an endless loop for a poison task.
kombu marks every message it puts back as ``redelivered``, so only those
deliveries are counted here (the happy path costs no Redis call), per task id
and retry number, and past ``STACK_MAX_REDELIVERIES`` the task is dead-lettered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from stack.settings import Settings


@dataclass(frozen=True)
class Redeliveries:
    """This delivery's count of deaths before it, and when the first one was noticed."""

    count: int
    first_at: float


class RedeliveryCounter:
    """Counts redeliveries in ``<key_prefix>redeliveries:<task id>:<retries>`` hashes."""

    def __init__(self, client: redis.Redis[bytes], settings: Settings) -> None:
        self.redis = client
        self.prefix = f"{settings.key_prefix}redeliveries:"
        # A whole worker's death shows up one visibility timeout later: keep the
        # count for longer than the cap's worth of those.
        self.ttl_s = settings.visibility_timeout_s * (settings.max_redeliveries + 2)

    def key(self, task_id: str, retries: int) -> str:
        return f"{self.prefix}{task_id}:{retries}"

    def record(self, task_id: str, retries: int) -> Redeliveries:
        """Count one more redelivery of attempt ``retries`` of ``task_id`` (one round trip)."""
        key = self.key(task_id, retries)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(key, "count", 1)
        pipe.hsetnx(key, "first_at", repr(time.time()))
        pipe.expire(key, self.ttl_s)
        pipe.hget(key, "first_at")
        count, _, _, first_at = pipe.execute()
        return Redeliveries(int(count), float(first_at))
