"""Crash safety: a killed worker child re-runs its task; a poison task is capped, not looped."""

from __future__ import annotations

import pytest

from stack.context import context_of
from stack.submit import submit
from stack.tasks.diagnostics import attempt_log
from tests.integration.helpers import wait_accounted, wait_until

pytestmark = pytest.mark.integration

MAX_REDELIVERIES = 2
RUN_S = 1.0  # the killed run and the re-run each sleep this long: 20 polls


@pytest.fixture
def stack_settings_overrides() -> dict[str, str]:
    return {"STACK_MAX_REDELIVERIES": str(MAX_REDELIVERIES)}


def deliveries(app, task_id: str) -> int:
    context = context_of(app)
    return len(attempt_log(context.redis, context.settings, task_id))


def test_task_whose_worker_child_is_killed_mid_run_is_run_again_and_succeeds(
    stack_app, stack_worker, stack_dead_letters
):
    worker = stack_worker(concurrency=1)
    task_id = submit(stack_app, "diagnostics.sleep", kwargs={"seconds": RUN_S})
    result = stack_app.AsyncResult(task_id)
    wait_until(lambda: result.state == "STARTED", 20, "the task to start")

    worker.kill_child(result.info["pid"])  # the child running it (Celery's STARTED meta)

    assert not result.ready(), "the task finished before the kill: nothing proved"
    assert result.get(timeout=30) >= RUN_S
    accounting = wait_accounted(stack_app, stack_dead_letters, [task_id])
    assert accounting.succeeded == {task_id}


def test_task_that_kills_its_worker_every_time_is_dead_lettered_after_the_redelivery_cap(
    stack_app, stack_worker, stack_dead_letters
):
    worker = stack_worker(concurrency=1)
    poison = submit(stack_app, "diagnostics.crash")

    accounting = wait_accounted(stack_app, stack_dead_letters, [poison], timeout_s=60)

    assert accounting.dead_lettered == {poison}
    record = stack_dead_letters.find_by_task(poison)
    died = MAX_REDELIVERIES + 1  # the first run, then each redelivery allowed
    assert deliveries(stack_app, poison) == died  # the capped delivery did not run it
    assert record.reason == f"worker lost {died} times"
    assert record.exception_type == "stack.errors.RedeliveryLimitExceeded"
    assert record.attempts == died
    assert worker.alive
    after = submit(stack_app, "diagnostics.echo", args=["still serving"])
    assert stack_app.AsyncResult(after).get(timeout=20) == "still serving"
    assert wait_accounted(stack_app, stack_dead_letters, [poison, after]).settled
