"""The Redis result backend, minus the subscription Celery makes when a task is sent.

Celery's Redis backend SUBSCRIBEs to a task's result channel inside
``send_task`` (``on_task_call``). A publisher that never calls ``.get()`` (the
API, Locust) then piles up subscriptions and undrained messages (celery #3808,
#5320, #6963), and with Redis down the subscribe raises ``RuntimeError: ... The
Celery application must be restarted`` before the publish retry policy even
runs. ``AsyncResult.get()`` subscribes by itself and then reads the stored
state, so dropping the publish-time subscription loses nothing.

Through Redis Sentinel (a ``sentinel://`` list) the same behaviour sits on
Celery's SentinelBackend, which finds the master through the sentinels.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery.backends.redis import RedisBackend, SentinelBackend

BACKEND_CLASS = "stack.result_backend:StackRedisBackend"
SENTINEL_BACKEND_CLASS = "stack.result_backend:StackSentinelBackend"
REDIS_SCHEMES = ("redis://", "rediss://")
SENTINEL_SCHEMES = ("sentinel://",)
RESULT_WRITE_RETRY_S = 30.0  # a task's result outlives a Redis restart (AOF keeps the rest)
RESULT_WRITE_RETRY_INTERVAL_S = 0.25
# Redis gone or restarting (not kombu's wider connection_errors, which include KeyError).
RESULT_WRITE_RETRY_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError)


class _StackBackendMixin(RedisBackend):
    """What both our backends change: subscribe on ``.get()`` only, retry result writes."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def store_result(self, *args: Any, **kwargs: Any) -> Any:
        """Store a task's state, retrying connection errors for RESULT_WRITE_RETRY_S.

        Celery's store reads the old state first, unguarded: a task that finished
        while Redis restarted was marked failed ("raised outside body"), neither
        retried nor dead-lettered (found by tests/integration/test_chaos_redis.py).
        Only writes wait: reads (the API's task status) must still fail in seconds,
        which is why ``result_backend_always_retry`` is not the answer.
        """
        deadline = time.monotonic() + RESULT_WRITE_RETRY_S
        while True:
            try:
                return super().store_result(*args, **kwargs)
            except RESULT_WRITE_RETRY_ERRORS:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(RESULT_WRITE_RETRY_INTERVAL_S)


class StackRedisBackend(_StackBackendMixin):
    """RedisBackend that subscribes on ``.get()`` only."""


class StackSentinelBackend(_StackBackendMixin, SentinelBackend):
    """SentinelBackend (the master found through the sentinels), subscribing on ``.get()``."""


def backend_url(url: str) -> str:
    """The ``result_backend`` value selecting our class for a Redis or sentinel URL
    (others unchanged)."""
    if url.lower().startswith(SENTINEL_SCHEMES):
        return f"{SENTINEL_BACKEND_CLASS}+{url}"
    if url.startswith(REDIS_SCHEMES):
        return f"{BACKEND_CLASS}+{url}"
    return url
