"""Chaos on workers: pool children and whole nodes killed, warm shutdown, hard time limits.

Each scenario submits a batch and accounts for every task: succeeded +
dead-lettered = submitted, and no `diagnostics.record` effect applied twice.
"""

import pytest

from stack.submit import submit

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

CHILD_KILLS = 3
SHUTDOWN_WAIT_S = 20.0


def test_every_task_is_accounted_for_when_pool_children_are_killed_repeatedly(stack_worker, batch):
    worker = stack_worker(concurrency=2)
    batch.submit_records(20, seconds=0.5)  # long enough that a kill lands mid-task on loaded cores
    killed = []
    for _ in range(CHILD_KILLS):
        busy = batch.wait_until(lambda a: set(a.in_flight.values()) & set(worker.children()))
        killed.append(worker.kill_child(min(set(busy.in_flight.values()) & set(worker.children()))))

    accounting = batch.settle()

    accounting.assert_every_task_accounted_for()
    accounting.assert_no_effect_applied_twice()
    assert accounting.reruns >= 1, "no kill hit a running task: the scenario proved nothing"
    assert worker.alive
    assert not set(killed) & set(worker.children()), "killed children were replaced"


@pytest.mark.stack_settings(STACK_VISIBILITY_TIMEOUT=3)
def test_a_second_worker_takes_over_the_tasks_of_a_killed_node_after_the_visibility_timeout(
    stack_worker, batch
):
    first = stack_worker(concurrency=2)
    batch.submit_records(20, seconds=0.2)
    batch.wait_until(lambda a: len(a.succeeded) >= 2 and a.in_flight)
    first.kill()
    killed_mid_task = set(batch.account().in_flight)

    second = stack_worker(concurrency=2)
    accounting = batch.settle()

    accounting.assert_every_task_accounted_for()
    accounting.assert_no_effect_applied_twice()
    assert killed_mid_task, "the node was killed with no task in flight: nothing proved"
    finished_by = {tid: batch.worker_of(tid) for tid in killed_mid_task}
    assert set(finished_by.values()) == {second.hostname}, finished_by


def test_warm_shutdown_finishes_the_running_task_then_exits(stack_worker, batch):
    worker = stack_worker(concurrency=1)
    [running] = batch.submit_records(1, seconds=1.0)
    queued = batch.submit_records(5, seconds=0.01)
    running_token = batch.submitted[running]
    batch.wait_until(lambda accounting: accounting.runs.get(running_token) == 1)

    worker.terminate()

    assert worker.wait(SHUTDOWN_WAIT_S) == 0
    after = batch.account()
    assert after.states[running] == "SUCCESS"
    assert after.effects[running_token] == 1
    assert all(after.states[tid] == "PENDING" for tid in queued), "queued tasks were not started"
    stack_worker(concurrency=1)
    accounting = batch.settle()
    accounting.assert_every_task_accounted_for()
    accounting.assert_no_effect_applied_twice()
    assert accounting.runs[running_token] == 1, "the finished task was not run again"


@pytest.mark.stack_settings(TASK_TIMEOUT=0.5, STACK_TASK_HARD_TIMEOUT=1)
def test_a_task_over_the_hard_time_limit_is_killed_and_dead_lettered_and_the_worker_survives(
    stack_app, stack_worker, batch
):
    worker = stack_worker(concurrency=2)
    stuck = batch.add(submit(stack_app, "diagnostics.stuck", kwargs={"seconds": 60}))
    batch.submit_records(10, seconds=0.05)

    accounting = batch.settle()

    accounting.assert_every_task_accounted_for()
    accounting.assert_no_effect_applied_twice()
    assert accounting.dead_lettered == {stuck}
    record = batch.dead_letters.find_by_task(stuck)
    assert "TimeLimitExceeded" in record.exception_type
    assert worker.alive
    assert stack_app.control.ping(destination=[worker.hostname], timeout=2)
