"""StackContext: what every part of a stack app reads (settings, Redis, dead letters, metrics).

Bound to a Celery app once, by the app factory, as ``app.stack_context``; read
back, typed, with :func:`context_of`. Nothing else hangs on the app. The Redis
client is made on first use in each process, because prefork children fork
after the app is built and must not share their parent's sockets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import redis

from stack.connection import redis_client
from stack.deadletter import DeadLetterStore
from stack.errors import SettingsError
from stack.metrics.recorder import MetricsRecorder
from stack.settings import Settings

ATTRIBUTE = "stack_context"


@dataclass
class StackContext:
    """One stack's settings and the Redis-backed objects built from them, per process."""

    settings: Settings
    _redis: redis.Redis[bytes] | None = field(default=None, init=False, repr=False)
    _pid: int = field(default=0, init=False, repr=False)
    _dead_letters: DeadLetterStore | None = field(default=None, init=False, repr=False)
    _metrics: MetricsRecorder | None = field(default=None, init=False, repr=False)

    @property
    def redis(self) -> redis.Redis[bytes]:
        """This process's client on the stack's Redis (a forked child makes its own)."""
        if self._redis is None or self._pid != os.getpid():
            self._redis, self._pid = redis_client(self.settings), os.getpid()
            self._dead_letters = self._metrics = None
        return self._redis

    @property
    def dead_letters(self) -> DeadLetterStore:
        client = self.redis
        if self._dead_letters is None:
            self._dead_letters = DeadLetterStore(client, self.settings)
        return self._dead_letters

    @property
    def metrics(self) -> MetricsRecorder:
        client = self.redis
        if self._metrics is None:
            self._metrics = MetricsRecorder(client, self.settings.key_prefix)
        return self._metrics

    def close(self) -> None:
        """Close this process's Redis client (the next use makes a new one)."""
        if self._redis is not None:
            self._redis.close()
        self._redis = self._dead_letters = self._metrics = None


def bind(app: Any, settings: Settings) -> StackContext:
    """Attach a new context for ``settings`` to ``app`` (the app factory's call)."""
    context = StackContext(settings)
    setattr(app, ATTRIBUTE, context)
    return context


def find_context(app: Any) -> StackContext | None:
    """The app's context, or None for an app that is not a stack app."""
    context = getattr(app, ATTRIBUTE, None)
    return context if isinstance(context, StackContext) else None


def context_of(app: Any) -> StackContext:
    """The app's context; a clear error for an app the factory did not build."""
    context = find_context(app)
    if context is None:
        name = getattr(app, "main", None)
        raise SettingsError(
            f"the Celery app {name!r} is not bound to celery-stack: build it with "
            "stack.app_factory.load_app(settings) or install_stack(app, settings)"
        )
    return context
