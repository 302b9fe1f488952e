"""The Redis result backend, minus the subscription Celery makes when a task is sent.

Celery's Redis backend SUBSCRIBEs to a task's result channel inside
``send_task`` (``on_task_call``). A publisher that never calls ``.get()`` (the
API, Locust) then piles up subscriptions and undrained messages (celery #3808,
#5320, #6963), and with Redis down the subscribe raises ``RuntimeError: ... The
Celery application must be restarted`` before the publish retry policy even
runs. ``AsyncResult.get()`` subscribes by itself and then reads the stored
state, so dropping the publish-time subscription loses nothing.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend

BACKEND_CLASS = "stack.backend:StackRedisBackend"
REDIS_SCHEMES = ("redis://", "rediss://")


class StackRedisBackend(RedisBackend):  # type: ignore[misc]
    """RedisBackend that subscribes on ``.get()`` only."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None


def backend_url(url: str) -> str:
    """The ``result_backend`` value selecting our class for a Redis URL (others unchanged)."""
    if url.startswith(REDIS_SCHEMES):
        return f"{BACKEND_CLASS}+{url}"
    return url
