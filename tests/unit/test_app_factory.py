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
