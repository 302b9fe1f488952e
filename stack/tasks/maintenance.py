"""Maintenance tasks run by beat on the ``maintenance`` queue (see celery_app.beat_schedule).

- ``maintenance.cleanup_expired_results``: Celery's Redis backend writes each
  result with a TTL, but a result written without one (``result_expires=None``
  in an older deploy, a user app, a restore from backup) stays forever. This
  task finds them by SCAN, deletes those older than the result expiry and gives
  the younger ones the TTL they should have had.
- ``maintenance.health_check``: PING Redis (broker and result backend), record
  a heartbeat that ``celery-stack doctor`` reads, return what it saw.

This module owns the ``<STACK_KEY_PREFIX>maintenance:`` keys.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from typing import Any

import redis
from celery import shared_task

from stack.settings import Settings
from stack.task import StackTask

SCAN_BATCH = 500  # keys per SCAN round trip: large enough to be quick, small enough not to block
HEARTBEAT_TTL_S = (
    180  # three beat periods (60 s): a missing heartbeat means beat or workers stopped
)
NO_TTL = -1  # what Redis TTL answers for a key without expiry


def heartbeat_key(settings: Settings) -> str:
    return f"{settings.key_prefix}maintenance:heartbeat"


def last_heartbeat(client: redis.Redis[bytes], settings: Settings) -> dict[str, Any] | None:
    """The last health check's record, or None when none ran within HEARTBEAT_TTL_S."""
    raw = client.get(heartbeat_key(settings))
    return None if raw is None else dict(json.loads(raw))


def result_age_s(meta: bytes, now_s: float) -> float | None:
    """Seconds since a stored result's ``date_done``; None when it has none (not finished)."""
    try:
        done = json.loads(meta).get("date_done")
        if not done:
            return None
        stamp = datetime.fromisoformat(done)
    except (ValueError, TypeError, AttributeError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return now_s - stamp.timestamp()


def sweep_results(
    client: redis.Redis[bytes], prefixes: list[str], expires_s: int, now_s: float
) -> dict[str, int]:
    """Delete results without a TTL past ``expires_s``; give the younger ones a TTL."""
    counts = {"scanned": 0, "deleted": 0, "expiry_set": 0}
    for prefix in prefixes:
        for key in client.scan_iter(match=f"{prefix}*", count=SCAN_BATCH):
            counts["scanned"] += 1
            if client.ttl(key) != NO_TTL:
                continue  # Redis expires it on time
            meta = client.get(key)
            if meta is None:
                continue
            age = result_age_s(meta, now_s)
            if age is not None and age >= expires_s:
                counts["deleted"] += int(client.delete(key))
            else:
                remaining = expires_s if age is None else int(expires_s - age) + 1
                counts["expiry_set"] += int(client.expire(key, remaining))
    return counts


@shared_task(bind=True, base=StackTask, name="maintenance.cleanup_expired_results")
def cleanup_expired_results(self: StackTask) -> dict[str, Any]:
    """Sweep the result backend for results that would never expire on their own."""
    backend = self.app.backend
    client = getattr(backend, "client", None)
    if not isinstance(client, redis.Redis):
        return {"skipped": f"result backend {type(backend).__name__} is not Redis"}
    prefixes = [backend.task_keyprefix, backend.group_keyprefix]  # global prefix included
    prefixes = [p.decode() if isinstance(p, bytes) else str(p) for p in prefixes]
    counts = sweep_results(client, prefixes, self.settings.result_expires_s, time.time())
    return {**counts, "expires_s": self.settings.result_expires_s}


@shared_task(bind=True, base=StackTask, name="maintenance.health_check")
def health_check(self: StackTask) -> dict[str, Any]:
    """PING broker and result backend, record a heartbeat, return what was seen.

    A Redis error propagates: the retry policy retries it, and a health check
    that keeps failing ends in the dead letters, where it is noticed.
    """
    started = time.perf_counter()
    self.redis.ping()
    broker_ms = (time.perf_counter() - started) * 1000
    backend_client = getattr(self.app.backend, "client", None)
    backend_ms = None
    if isinstance(backend_client, redis.Redis):
        started = time.perf_counter()
        backend_client.ping()
        backend_ms = (time.perf_counter() - started) * 1000
    memory = self.redis.info("memory")
    record = {
        "status": "ok",
        "at": time.time(),
        "worker": self.request.hostname or socket.gethostname(),
        "broker_ping_ms": round(broker_ms, 3),
        "backend_ping_ms": None if backend_ms is None else round(backend_ms, 3),
        "redis_used_memory_bytes": int(memory.get("used_memory", 0)),
    }
    self.redis.set(heartbeat_key(self.settings), json.dumps(record), ex=HEARTBEAT_TTL_S)
    return record
