"""Retries follow the schedule, keep queue and priority, and stop where the policy says."""

from __future__ import annotations

import itertools

import pytest

from stack.context import context_of
from stack.submit import submit
from stack.tasks.diagnostics import attempt_log
from tests.integration.helpers import wait_accounted

pytestmark = pytest.mark.integration

DELAYS_S = (0.5, 1.0)  # short, yet long enough that 10 % is measurable
TOLERANCE = 0.10
SLOW_FACTOR = 2  # a retry may run late under load, never early


@pytest.fixture
def stack_settings_overrides() -> dict[str, str]:
    return {"STACK_RETRY_DELAYS": ",".join(map(str, DELAYS_S)), "STACK_MAX_RETRIES": "3"}


def test_task_failing_twice_succeeds_on_third_attempt_after_the_scheduled_gaps(
    stack_app, stack_worker, stack_dead_letters
):
    stack_worker(concurrency=1)
    task_id = submit(stack_app, "diagnostics.fail", kwargs={"failures": 2})

    result = stack_app.AsyncResult(task_id).get(timeout=30)

    assert result["attempts"] == 3
    times = result["attempt_times"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, expected in zip(gaps, DELAYS_S, strict=True):
        # Never early; late only by a loaded host's scheduling (generous: catches a gap that
        # drags, not a slow CI machine).
        assert (1 - TOLERANCE) * expected <= gap <= SLOW_FACTOR * expected, (gaps, DELAYS_S)
    accounting = wait_accounted(stack_app, stack_dead_letters, [task_id])
    assert accounting.succeeded == {task_id} and accounting.dead_lettered == set()


@pytest.mark.stack_settings(STACK_RETRY_DELAYS="0.1")  # the gaps are the test above's business
def test_retried_task_keeps_its_queue_and_priority(stack_app, stack_worker, stack_dead_letters):
    stack_worker(concurrency=1)
    task_id = submit(
        stack_app, "diagnostics.always_fail", queue="query_processing", priority="high"
    )

    accounting = wait_accounted(stack_app, stack_dead_letters, [task_id], timeout_s=30)

    record = stack_dead_letters.find_by_task(task_id)
    assert accounting.dead_lettered == {task_id}
    assert (record.attempts, record.queue, record.priority) == (4, "query_processing", "high")


def test_non_retryable_error_is_dead_lettered_after_one_attempt(
    stack_app, stack_worker, stack_dead_letters
):
    stack_worker(concurrency=1)
    task_id = submit(stack_app, "diagnostics.always_fail", kwargs={"retryable": False})

    accounting = wait_accounted(stack_app, stack_dead_letters, [task_id], timeout_s=30)

    record = stack_dead_letters.find_by_task(task_id)
    assert accounting.dead_lettered == {task_id}
    assert record.attempts == 1
    assert record.exception_type == "stack.retry.NonRetryableError"
    assert "not retryable" in record.reason
    context = context_of(stack_app)
    assert len(attempt_log(context.redis, context.settings, task_id)) == 1
