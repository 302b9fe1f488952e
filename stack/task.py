"""StackTask: the base class of every task in a celery-stack app.

It gives tasks their settings and a Redis client, and is where a task's life is
steered: rate-limit gate, delivery counting, retry or dead letter.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from celery import Celery, Task

from stack.connection import redis_client
from stack.errors import SettingsError
from stack.settings import Settings


def bind_settings(app: Celery, settings: Settings) -> None:
    """Attach the settings that tasks, hooks and stores of this app read."""
    app.stack_settings = settings
    app.stack_redis = None


def settings_of(app: Celery) -> Settings:
    settings = getattr(app, "stack_settings", None)
    if settings is None:
        raise SettingsError(
            f"the Celery app {app.main!r} is not bound to celery-stack settings: "
            "build it with stack.celery_app.create_celery_app() or load_app()"
        )
    return cast(Settings, settings)


def redis_of(app: Celery) -> redis.Redis[bytes]:
    """One Redis client per app and process (created lazily: prefork children fork first)."""
    client = getattr(app, "stack_redis", None)
    if client is None:
        client = redis_client(settings_of(app))
        app.stack_redis = client
    return cast("redis.Redis[bytes]", client)


class StackTask(Task):  # type: ignore[misc]
    """Base task: settings and Redis at hand."""

    abstract = True

    @property
    def settings(self) -> Settings:
        return settings_of(self.app)

    @property
    def redis(self) -> redis.Redis[bytes]:
        return redis_of(self.app)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs)
