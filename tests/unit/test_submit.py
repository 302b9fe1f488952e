"""submit()'s pure parts: the publish deadline, and refusals before Redis is touched."""

from __future__ import annotations

import pytest
from celery import Celery

from stack.arguments import MAX_ARGUMENT_DEPTH
from stack.context import bind
from stack.errors import ArgumentsTooDeep, SettingsError, UnknownQueue, UnknownTask
from stack.settings import Settings
from stack.submit import publish_deadline, submit


def offline_app() -> Celery:
    """An app bound to a Redis nobody listens on: any publish would fail."""
    app = Celery("offline", set_as_current=False)
    bind(app, Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))

    @app.task(name="offline.noop", shared=False)
    def noop() -> None:
        return None

    return app


def test_the_publish_retry_errback_gives_up_once_the_deadline_has_passed():
    errback = publish_deadline(timeout_s=0.0)
    with pytest.raises(ConnectionError):
        errback(ConnectionError("refused"), 0.2)


def test_the_publish_retry_errback_lets_kombu_retry_before_the_deadline():
    publish_deadline(timeout_s=60.0)(ConnectionError("refused"), 0.2)  # no raise: retry


def test_an_unknown_task_is_refused_without_touching_redis():
    with pytest.raises(UnknownTask, match=r"offline\.nope"):
        submit(offline_app(), "offline.nope")


def test_an_unknown_queue_is_refused_without_touching_redis():
    with pytest.raises(UnknownQueue, match="expected one of default"):
        submit(offline_app(), "offline.noop", queue="normal")


def test_an_app_the_factory_did_not_bind_is_a_clear_error():
    with pytest.raises(SettingsError, match="not bound to celery-stack"):
        submit(Celery("plain", set_as_current=False), "anything")


def test_arguments_nested_past_the_limit_are_refused_without_touching_redis():
    deep: object = "leaf"
    for _ in range(MAX_ARGUMENT_DEPTH + 1):
        deep = {"next": deep}
    with pytest.raises(ArgumentsTooDeep, match=r"argument args\[1\] nests deeper than"):
        submit(offline_app(), "offline.noop", args=[1, deep])
