"""UnackedReclaimer on real workers: what a SIGKILLed worker held comes back at once,
what a live worker holds stays where it is."""

from __future__ import annotations

import json
import time

import pytest

from stack.connection import redis_client
from stack.launcher.reclaim import UnackedReclaimer
from stack.queues import UNACKED_KEY, physical_names, priority_lists, queue_name
from stack.submit import submit
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

COUNTDOWN_S = 20  # held unacked by the worker until then; below the test visibility timeout


def unacked_task_ids(settings) -> set[str]:
    client = redis_client(settings)
    try:
        return {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals(UNACKED_KEY)}
    finally:
        client.close()


def waiting(settings, queue: str) -> int:
    client = redis_client(settings)
    try:
        return sum(client.llen(key) for key in priority_lists(queue_name(settings, queue)))
    finally:
        client.close()


def test_a_dead_workers_messages_are_requeued_and_a_live_workers_are_left_alone(
    stack_app, stack_settings, stack_worker
):
    since = time.time()
    live = stack_worker(queues=["default"])
    kept = submit(stack_app, "diagnostics.echo", ["live"], countdown_s=COUNTDOWN_S)
    wait_until(lambda: kept in unacked_task_ids(stack_settings), 20, "the live worker's delivery")
    dead = stack_worker(queues=["maintenance"])
    lost = submit(
        stack_app, "diagnostics.echo", ["dead"], queue="maintenance", countdown_s=COUNTDOWN_S
    )
    wait_until(lambda: lost in unacked_task_ids(stack_settings), 20, "the dead worker's delivery")
    dead.kill()
    until = time.time()

    reclaimer = UnackedReclaimer(stack_settings, tuple(physical_names(stack_settings)))
    line = reclaimer.reclaim(since, until)

    assert line == (
        "requeued 1 message its predecessor held unacked; 1 held by live workers left alone"
    )
    assert unacked_task_ids(stack_settings) == {kept}
    assert waiting(stack_settings, "maintenance") == 1
    assert live.alive


def test_nothing_delivered_outside_the_dead_workers_life_or_its_queues_is_touched(
    stack_app, stack_settings, stack_worker
):
    worker = stack_worker(queues=["default"])
    task_id = submit(stack_app, "diagnostics.echo", ["x"], countdown_s=COUNTDOWN_S)
    wait_until(lambda: task_id in unacked_task_ids(stack_settings), 20, "the delivery")
    worker.kill()
    after = time.time() + 1

    assert UnackedReclaimer(stack_settings, ("elsewhere",)).reclaim(0, after) == ""
    assert (
        UnackedReclaimer(stack_settings, tuple(physical_names(stack_settings))).reclaim(
            after, after + 10
        )
        == ""
    )
    assert unacked_task_ids(stack_settings) == {task_id}
