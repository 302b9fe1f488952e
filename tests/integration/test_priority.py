"""Priorities: the four named levels map onto Redis priority lists, and order holds."""

from __future__ import annotations

import json

import pytest

from stack.queues import Priority, priority_lists, queue_depths, queue_name
from stack.submit import submit
from tests.integration.helpers import wait_accounted

pytestmark = pytest.mark.integration

LOW, CRITICAL = 20, 5


def test_critical_tasks_queued_behind_low_ones_complete_first_with_prefetch_one(
    stack_app, stack_worker, stack_dead_letters, stack_settings
):
    lows = [
        submit(stack_app, "diagnostics.echo", args=[f"low {n}"], priority="low") for n in range(LOW)
    ]
    criticals = [
        submit(stack_app, "diagnostics.echo", args=[f"critical {n}"], priority="critical")
        for n in range(CRITICAL)
    ]
    assert queue_depths(stack_app.backend.client, stack_settings)["default"] == LOW + CRITICAL

    stack_worker(concurrency=1)  # prefetch multiplier 1: one message in hand at a time
    accounting = wait_accounted(stack_app, stack_dead_letters, lows + criticals, timeout_s=60)

    assert len(accounting.succeeded) == LOW + CRITICAL
    done = {
        task_id: stack_app.backend.get_task_meta(task_id)["date_done"]
        for task_id in lows + criticals
    }
    first = sorted(done, key=done.__getitem__)[:CRITICAL]
    assert set(first) == set(criticals)


def test_unmarked_task_is_queued_at_normal_priority_not_celerys_zero(stack_app, stack_settings):
    task_id = stack_app.send_task("diagnostics.echo", queue=queue_name(stack_settings, "default"))

    lists = priority_lists(queue_name(stack_settings, "default"))
    normal = lists[[p.value for p in Priority].index(Priority.NORMAL.value)]
    waiting = [
        json.loads(m)["headers"]["id"] for m in stack_app.backend.client.lrange(normal, 0, -1)
    ]
    assert waiting == [task_id.id]
