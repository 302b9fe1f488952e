"""STACK_EXECUTION=auto against a real Redis and a real worker: Celery while the broker
answers, direct (in this process, with a warning) once it does not."""

from __future__ import annotations

import logging

import pytest

from stack import direct
from stack.submit import submit
from stack.task_status import task_status
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.stack_settings(STACK_EXECUTION="auto")
def test_auto_uses_the_worker_while_redis_answers_and_runs_directly_once_it_is_down(
    stack_app, stack_worker, stack_redis, caplog
):
    stack_worker()
    queued = submit(stack_app, "diagnostics.echo", args=["through celery"])
    assert stack_app.AsyncResult(queued).get(timeout=30) == "through celery"
    assert direct.RUNS.get(queued) is None  # a worker ran it, not this process
    assert not [r for r in caplog.records if "STACK_EXECUTION=auto" in r.getMessage()]

    stack_redis.stop()
    with caplog.at_level(logging.WARNING, logger="stack.submit"):
        fallback = submit(stack_app, "diagnostics.echo", args=["in process"])
    wait_until(lambda: task_status(stack_app, fallback).status == "success", 10, "the run")
    assert task_status(stack_app, fallback).result == "in process"
    assert any("running diagnostics.echo" in r.getMessage() for r in caplog.records)
