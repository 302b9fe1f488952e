"""Beat with a Redis lock: exactly one beat dispatches, however many are started.

Two beats send every periodic task twice. Celery has no guard against it,
and a second beat is easy to start by accident (a redeploy that overlaps,
two replicas, a developer's laptop on the production Redis). This scheduler
is Celery's PersistentScheduler (its state in the data directory's
``celerybeat-schedule``), and it only opens that state and dispatches while
it holds a lock in Redis (redis-py's ``Lock``: a token, a TTL, atomic
extend and release). A second beat stands by and takes over within a few
seconds when the first stops, or within the TTL when it dies.

Use: ``celery -A stack.celery_app beat -S stack.beat:LockedScheduler``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.beat import PersistentScheduler
from redis.exceptions import LockError

from stack.connection import redis_client
from stack.context import context_of
from stack.settings import Settings

log = logging.getLogger(__name__)

LOCK_TTL_S = 60.0  # a dead beat's lock frees itself after this long ...
RENEW_EVERY_S = 10.0  # ... while a live one renews it this often (ticks at least this often)
STANDBY_POLL_S = 1.0  # a standing-by beat tries for the lock this often
STANDBY_LOG_EVERY_S = 60.0  # and says that it is waiting this often


class LockedScheduler(PersistentScheduler):
    """PersistentScheduler that dispatches only while it holds the stack's beat lock."""

    def setup_schedule(self) -> None:
        settings = context_of(self.app).settings
        self.lock_name = lock_key(settings)
        self.lock = redis_client(settings).lock(
            self.lock_name, timeout=LOCK_TTL_S, sleep=STANDBY_POLL_S, thread_local=False
        )
        self.acquire()
        super().setup_schedule()

    def acquire(self) -> None:
        """Block until this beat holds the lock (the schedule is not opened before)."""
        waited_since = time.monotonic()
        timeout_s = 0.0  # the first try says at once whether another beat holds it
        while True:
            try:
                if self.lock.acquire(blocking=timeout_s > 0, blocking_timeout=timeout_s or None):
                    log.info("beat lock %s acquired: this beat dispatches", self.lock_name)
                    return
            except redis.RedisError as exc:
                log.warning("beat lock: Redis does not answer (%s); retrying", exc)
                time.sleep(STANDBY_POLL_S)
                continue
            log.info(
                "another beat holds %s: standing by (%.0f s so far)",
                self.lock_name,
                time.monotonic() - waited_since,
            )
            timeout_s = STANDBY_LOG_EVERY_S

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Renew the lock, then tick; a beat that lost its lock stands by again."""
        try:
            self.lock.extend(LOCK_TTL_S, replace_ttl=True)
        except (LockError, redis.RedisError) as exc:
            log.error("beat lock %s lost (%s): standing by", self.lock_name, exc)
            self.acquire()
        return float(min(super().tick(*args, **kwargs), RENEW_EVERY_S))

    def close(self) -> None:
        super().close()
        lock = getattr(self, "lock", None)
        if lock is None:
            return
        try:
            lock.release()
            log.info("beat lock %s released", self.lock_name)
        except (LockError, redis.RedisError) as exc:
            log.warning("beat lock %s not released (%s): it expires by itself", self.lock_name, exc)


def lock_key(settings: Settings) -> str:
    return f"{settings.key_prefix}beat:lock"
