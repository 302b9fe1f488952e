"""Poison messages: dead-lettered once, in the worker's main process, and the worker keeps going.

Each message here bypasses submit() and the API (as a foreign producer or a bug
would): published with `app.send_task`, or hand-built with kombu.
"""

from __future__ import annotations

import pickle
import time
import uuid
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.arguments import MAX_ARGUMENT_DEPTH
from stack.deadletter import DeadLetter, DeadLetterStore
from stack.harness.worker_process import WorkerProcess
from stack.queues import Priority, queue_depths, queue_name, unacked_count
from stack.settings import Settings
from stack.submit import submit
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

POOL_KILLING_DEPTH = 500  # measured: the prefork main process's pickler gives up near 480
SETTLE_S = 1.0  # long enough for a redelivery loop to show (each lap takes milliseconds)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def publish_raw(
    app: Celery,
    settings: Settings,
    body: bytes,
    content_type: str = "application/json",
    task: str = "diagnostics.echo",
    **headers: Any,
) -> str:
    """Publish a hand-built protocol-2 message to the default queue; return its task id."""
    queue = app.amqp.queues[queue_name(settings, "default")]
    task_id = str(uuid.uuid4())
    with app.connection_for_write() as connection:
        connection.Producer().publish(
            body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            content_type=content_type,
            content_encoding="utf-8",
            headers={"lang": "py", "task": task, "id": task_id, "retries": 0, **headers},
            priority=Priority.NORMAL.value,
        )
    return task_id


def dead_letter_of(store: DeadLetterStore, task_id: str, timeout_s: float = 30) -> DeadLetter:
    wait_until(lambda: store.find_by_task(task_id) is not None, timeout_s, f"{task_id} dead")
    record = store.find_by_task(task_id)
    assert record is not None
    return record


def assert_worker_kept_consuming(app: Celery, worker: WorkerProcess) -> None:
    assert worker.alive, f"the worker died:\n{worker.log_tail(40)}"
    after = submit(app, "diagnostics.echo", args=["still serving"])
    assert app.AsyncResult(after).get(timeout=30) == "still serving"


def assert_handled_once(
    app: Celery, settings: Settings, store: DeadLetterStore, worker: WorkerProcess, task_id: str
) -> None:
    """One dead letter, one delivery (the worker logged the id once), nothing left in Redis."""
    time.sleep(SETTLE_S)
    assert store.count() == 1
    mentions = [line for line in worker.log_text().splitlines() if task_id in line]
    assert len(mentions) == 1, "\n".join(mentions)
    client = app.backend.client
    assert sum(queue_depths(client, settings).values()) == 0
    assert unacked_count(client) == 0
    assert app.AsyncResult(task_id).state == "FAILURE"


def test_arguments_too_deep_for_the_pool_are_dead_lettered_once_and_the_worker_lives(
    stack_app, stack_worker, stack_dead_letters, stack_settings
):
    worker = stack_worker(concurrency=1)
    poison = stack_app.send_task(  # send_task skips submit's depth check
        "diagnostics.echo",
        args=[nested(POOL_KILLING_DEPTH)],
        queue=queue_name(stack_settings, "default"),
    ).id

    record = dead_letter_of(stack_dead_letters, poison)

    assert_worker_kept_consuming(stack_app, worker)
    assert_handled_once(stack_app, stack_settings, stack_dead_letters, worker, poison)
    assert record.exception_type == "stack.errors.ArgumentsTooDeep"
    assert f"deeper than {MAX_ARGUMENT_DEPTH} levels" in record.exception_message
    assert "args[0]" in record.exception_message
    assert record.args == [] and record.kwargs == {}  # not kept: no reader could parse them back
    assert (record.attempts, record.queue, record.worker) == (1, "default", worker.hostname)
    assert stack_dead_letters.get(record.id) == record  # the record itself reads back


@pytest.mark.parametrize(
    ("body", "content_type", "exception_type"),
    [
        pytest.param(b"{not json", "application/json", "kombu.exceptions.DecodeError", id="json"),
        pytest.param(
            pickle.dumps(((1,), {}, {})),
            "application/x-python-serialize",
            "kombu.exceptions.ContentDisallowed",
            id="refused-content-type",
        ),
        pytest.param(
            b'{"x": 1}', "application/json", "celery.exceptions.InvalidTaskError", id="not-a-task"
        ),
        pytest.param(
            b'[[1], {}, {}, "extra"]',
            "application/json",
            "celery.exceptions.InvalidTaskError",
            id="wrong-shape",
        ),
    ],
)
def test_a_message_the_worker_cannot_decode_is_dead_lettered_once_and_the_worker_lives(
    stack_app, stack_worker, stack_dead_letters, stack_settings, body, content_type, exception_type
):
    worker = stack_worker(concurrency=1)
    poison = publish_raw(stack_app, stack_settings, body, content_type)

    record = dead_letter_of(stack_dead_letters, poison)

    assert_worker_kept_consuming(stack_app, worker)
    assert_handled_once(stack_app, stack_settings, stack_dead_letters, worker, poison)
    assert record.exception_type == exception_type
    assert record.exception_message
    assert record.name == "diagnostics.echo" and record.reason == "message cannot be decoded"


def test_a_poison_message_with_nonsense_headers_is_still_dead_lettered_once(
    stack_app, stack_worker, stack_dead_letters, stack_settings
):
    worker = stack_worker(concurrency=1)
    nonsense = {"retries": "many", "stack_first_failure_at": "yesterday"}
    poison = publish_raw(stack_app, stack_settings, b"\xff\xfe not utf-8", **nonsense)

    record = dead_letter_of(stack_dead_letters, poison)

    assert_worker_kept_consuming(stack_app, worker)
    assert_handled_once(stack_app, stack_settings, stack_dead_letters, worker, poison)
    assert record.exception_type == "kombu.exceptions.DecodeError"
    assert record.attempts == 1 and record.first_failure_at == record.last_failure_at


def test_arguments_that_do_not_fit_the_signature_are_dead_lettered_once_as_type_error(
    stack_app, stack_worker, stack_dead_letters, stack_settings
):
    worker = stack_worker(concurrency=1)
    poison = submit(stack_app, "diagnostics.echo", kwargs={"bogus": 1})

    record = dead_letter_of(stack_dead_letters, poison)

    assert_worker_kept_consuming(stack_app, worker)
    assert_handled_once(stack_app, stack_settings, stack_dead_letters, worker, poison)
    assert record.exception_type == "TypeError"
    assert "unexpected keyword argument 'bogus'" in record.exception_message
    assert record.reason == "arguments do not fit the task"
    assert (record.kwargs, record.attempts) == ({"bogus": 1}, 1)


def test_the_api_refuses_arguments_nested_too_deep_with_422_and_queues_nothing(
    stack_app, stack_settings
):
    api = TestClient(create_app(app=stack_app))

    response = api.post(
        "/tasks", json={"name": "diagnostics.echo", "args": [nested(POOL_KILLING_DEPTH)]}
    )

    assert response.status_code == 422
    assert f"deeper than {MAX_ARGUMENT_DEPTH} levels" in response.json()["detail"]
    assert sum(queue_depths(stack_app.backend.client, stack_settings).values()) == 0
    limit = api.post(
        "/tasks", json={"name": "diagnostics.echo", "args": [nested(MAX_ARGUMENT_DEPTH)]}
    )
    assert limit.status_code == 202  # the limit itself is allowed
