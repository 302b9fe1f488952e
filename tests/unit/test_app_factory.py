"""Start-up refuses reliability settings the broker or the limiter could not honour."""

from __future__ import annotations

import pytest

from stack.app_factory import create_celery_app
from stack.errors import SettingsError
from stack.settings import Settings


def test_the_app_refuses_a_retry_delay_past_the_visibility_timeout():
    settings = Settings.load(
        environ={"STACK_RETRY_DELAYS": "10,40", "STACK_VISIBILITY_TIMEOUT": "30"}
    )
    with pytest.raises(SettingsError, match="Shorten STACK_RETRY_DELAYS"):
        create_celery_app(settings)


def test_the_app_refuses_a_malformed_rate_limit_naming_the_variable():
    # Settings.load refuses it first; settings built another way still meet the app's check.
    settings = Settings.load(environ={}).model_copy(
        update={"rate_limits": {"diagnostics.limited": "fast"}}
    )
    with pytest.raises(SettingsError, match="STACK_RATE_LIMITS"):
        create_celery_app(settings)


def test_the_reference_app_runs_every_task_through_the_kit():
    app = create_celery_app(Settings.load(environ={}))
    limited = app.tasks["diagnostics.limited"]
    assert limited.Request == "stack.task:StackRequest"
    assert limited.global_rate_limit == "5/s"
    assert limited.max_retries is None  # the RetryPolicy applies STACK_MAX_RETRIES


def test_the_seeds_queue_normal_is_refused_at_once_naming_the_queues_and_the_priority_fix():
    """The monitoring seed's `apply_async(priority=5, queue="normal")` used to create a queue
    nobody consumes: PENDING for ever. Now it raises before anything is sent (no Redis here)."""
    import time

    from celery.exceptions import QueueNotFound

    from stack.errors import UnknownQueue

    app = create_celery_app(Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))
    started = time.monotonic()
    with pytest.raises(UnknownQueue) as caught:
        app.tasks["monitoring.check_monitor"].apply_async(
            args=["monitor_123"], priority=5, queue="normal"
        )
    assert time.monotonic() - started < 1.0
    assert isinstance(caught.value, QueueNotFound)  # Celery's own class still catches it
    message = str(caught.value)
    assert "default, file_processing, query_processing, maintenance" in message
    assert "'normal' is a priority, not a queue" in message
    assert "priority= (critical, high, normal, low, or 0-9)" in message


def test_an_undeclared_queue_is_refused_by_send_task_too_and_declared_ones_route():
    from stack.errors import UnknownQueue

    app = create_celery_app(Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))
    with pytest.raises(UnknownQueue, match="unknown queue 'defualt'"):
        app.send_task("diagnostics.echo", queue="defualt")
    assert app.amqp.router.route({}, "files.process_csv")["queue"].name == "file_processing"
    assert app.amqp.router.route({"queue": "maintenance"}, "x")["queue"].name == "maintenance"
