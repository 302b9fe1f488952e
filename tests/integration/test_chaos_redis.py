"""Chaos on Redis: restarted under a running batch, down while the API takes tasks.

Each scenario accounts for every task it submitted (succeeded + dead-lettered
= submitted) and checks that no `diagnostics.record` effect applied twice.
"""

import threading
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.connection import redis_client
from stack.queues import priority_lists, queue_name

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

PUBLISH_TIMEOUT_S = 0.5
ANSWER_WITHIN_S = PUBLISH_TIMEOUT_S + 4.0  # "within seconds": the publish budget, plus slack
OUTAGE_S = 3 * PUBLISH_TIMEOUT_S  # long enough that requests meet it, not just straddle it


def queued(settings, logical="default"):
    client = redis_client(settings)
    try:
        return sum(client.llen(name) for name in priority_lists(queue_name(settings, logical)))
    finally:
        client.close()


@pytest.mark.stack_settings(STACK_VISIBILITY_TIMEOUT=3)
def test_workers_reconnect_and_finish_the_batch_when_redis_restarts(
    stack_redis, stack_settings, stack_worker, batch
):
    stack_worker(concurrency=2)
    batch.submit_records(30, seconds=0.05)
    batch.wait_until(lambda accounting: len(accounting.succeeded) >= 3)
    waiting = queued(stack_settings)

    stack_redis.restart()

    assert waiting > 0, "the batch was already drained: the restart proved nothing"
    accounting = batch.settle(timeout_s=60)
    accounting.assert_every_task_accounted_for()
    accounting.assert_no_effect_applied_twice()


@pytest.mark.stack_settings(STACK_PUBLISH_TIMEOUT=PUBLISH_TIMEOUT_S)
def test_the_api_answers_503_within_seconds_while_redis_is_down_and_accepts_only_what_it_stored(
    stack_redis, stack_app, stack_settings, stack_worker, batch
):
    answers = []  # (status, task id or None, token, seconds taken)
    stop = threading.Event()

    with TestClient(create_app(stack_settings, stack_app)) as client:

        def post_until_stopped():
            while not stop.is_set():
                token = uuid.uuid4().hex
                started = time.monotonic()
                response = client.post(
                    "/tasks", json={"name": "diagnostics.record", "args": [token]}
                )
                body = response.json()
                answers.append(
                    (response.status_code, body.get("task_id"), token, time.monotonic() - started)
                )
                if response.status_code == 503:
                    assert "Redis" in body["detail"], body

        poster = threading.Thread(target=post_until_stopped)
        poster.start()
        try:
            time.sleep(0.3)
            stack_redis.kill()
            time.sleep(OUTAGE_S)
            stack_redis.start()
            time.sleep(0.3)
        finally:
            stop.set()
            poster.join(timeout=30)

    statuses = {status for status, *_ in answers}
    assert statuses <= {202, 503}, answers
    refused = [answer for answer in answers if answer[0] == 503]
    assert refused, "no request met the outage"
    assert max(seconds for *_, seconds in refused) < ANSWER_WITHIN_S
    for status, task_id, token, _ in answers:
        if status == 202:
            batch.add(task_id, token)
    stack_worker(concurrency=2)
    accounting = batch.settle()
    accounting.assert_every_task_accounted_for()  # every 202 was stored: none lost
    accounting.assert_no_effect_applied_twice()
