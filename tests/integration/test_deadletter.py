"""Dead letters: exactly once per final failure, every field kept, replay, purge, API and CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.context import context_of
from stack.pytest_plugin import worker_environ
from stack.queues import Priority, priority_lists, queue_depths, queue_name
from stack.submit import replay, submit
from stack.tasks.diagnostics import attempt_log
from tests.integration.helpers import wait_accounted, wait_until

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60


@pytest.fixture
def stack_settings_overrides() -> dict[str, str]:
    return {"STACK_RETRY_DELAYS": "0.2,0.2,0.2", "STACK_MAX_RETRIES": "3"}


def attempt_times(app, task_id: str) -> list[float]:
    context = context_of(app)
    return attempt_log(context.redis, context.settings, task_id)


def test_always_failing_task_lands_in_dead_letters_once_after_four_attempts_with_every_field(
    stack_app, stack_worker, stack_dead_letters
):
    worker = stack_worker(concurrency=1)
    task_id = submit(
        stack_app,
        "diagnostics.always_fail",
        kwargs={"message": "boom"},
        queue="file_processing",
        priority="high",
    )

    accounting = wait_accounted(stack_app, stack_dead_letters, [task_id], timeout_s=30)
    time.sleep(0.5)  # anything that would dead-letter it twice has had its chance

    assert accounting.dead_lettered == {task_id}
    assert stack_dead_letters.count() == 1
    record = stack_dead_letters.find_by_task(task_id)
    attempts = attempt_times(stack_app, task_id)
    assert len(attempts) == 4
    assert record.id and record.id != task_id
    assert record.task_id == task_id
    assert record.name == "diagnostics.always_fail"
    assert (record.args, record.kwargs) == ([], {"message": "boom"})
    assert (record.queue, record.priority) == ("file_processing", "high")
    assert record.exception_type == "stack.tasks.diagnostics.DiagnosticFailure"
    assert record.exception_message == "boom"
    assert "DiagnosticFailure: boom" in record.traceback
    assert record.attempts == 4
    assert attempts[0] <= record.first_failure_at < attempts[1]
    assert attempts[-1] <= record.last_failure_at < attempts[-1] + 5
    assert record.worker == worker.hostname
    assert record.reason == "gave up after 4 attempts"
    assert stack_dead_letters.get(record.id) == record


def test_replay_republishes_to_the_original_queue_and_priority_and_notes_it(
    stack_app, stack_worker, stack_dead_letters, stack_settings
):
    worker = stack_worker(concurrency=1)
    task_id = submit(stack_app, "diagnostics.always_fail", queue="query_processing", priority="low")
    wait_accounted(stack_app, stack_dead_letters, [task_id], timeout_s=30)
    worker.kill()  # idle: SIGKILL loses nothing, where a warm shutdown takes ~3 s
    record = stack_dead_letters.find_by_task(task_id)

    new_id = replay(stack_app, record.id)

    low_list = priority_lists(queue_name(stack_settings, "query_processing"))[3]
    waiting = [json.loads(m) for m in stack_app.backend.client.lrange(low_list, 0, -1)]
    assert [m["headers"]["id"] for m in waiting] == [new_id]
    assert waiting[0]["properties"]["priority"] == Priority.LOW.value
    assert queue_depths(stack_app.backend.client, stack_settings)["query_processing"] == 1
    assert [r.task_id for r in stack_dead_letters.get(record.id).replays] == [new_id]

    stack_worker(concurrency=1)  # the replay fails 4 times again: a second record
    accounting = wait_accounted(stack_app, stack_dead_letters, [task_id, new_id], timeout_s=30)
    assert accounting.dead_lettered == {task_id, new_id}
    again = stack_dead_letters.find_by_task(new_id)
    assert (again.queue, again.priority, again.attempts) == ("query_processing", "low", 4)


def test_purge_empties_the_dead_letters(stack_app, stack_worker, stack_dead_letters):
    stack_worker(concurrency=2)
    ids = [
        submit(stack_app, "diagnostics.always_fail", kwargs={"retryable": False}) for _ in range(3)
    ]
    wait_accounted(stack_app, stack_dead_letters, ids, timeout_s=30)

    assert stack_dead_letters.purge() == 3

    assert stack_dead_letters.count() == 0
    assert stack_dead_letters.page() == []
    assert all(stack_dead_letters.find_by_task(task_id) is None for task_id in ids)


def test_hard_time_limit_dead_letters_the_task_once_without_rerunning_it(
    stack_app, stack_worker, stack_dead_letters, stack_settings
):
    stack_worker(concurrency=1)
    default = queue_name(stack_settings, "default")
    result = stack_app.tasks["diagnostics.stuck"].apply_async(  # it ignores the soft limit
        args=[30], queue=default, priority=Priority.HIGH.value, soft_time_limit=0.5, time_limit=1
    )

    accounting = wait_accounted(stack_app, stack_dead_letters, [result.id], timeout_s=30)
    time.sleep(1.5)  # a re-queued copy would be running (or dead-lettered twice) by now

    assert accounting.dead_lettered == {result.id}
    record = stack_dead_letters.find_by_task(result.id)
    assert record.reason == "hard time limit"
    assert record.exception_type == "celery.exceptions.TimeLimitExceeded"
    assert (record.queue, record.priority, record.args, record.attempts) == (
        "default",
        "high",
        [30],
        1,
    )
    assert stack_dead_letters.count() == 1
    assert sum(queue_depths(stack_app.backend.client, stack_settings).values()) == 0
    assert stack_app.backend.client.hlen("unacked") == 0


def test_api_lists_shows_replays_and_deletes_dead_letters(
    stack_app, stack_worker, stack_dead_letters
):
    stack_worker(concurrency=2)
    ids = [
        submit(stack_app, "diagnostics.always_fail", kwargs={"retryable": False}) for _ in range(3)
    ]
    wait_accounted(stack_app, stack_dead_letters, ids, timeout_s=30)
    api = TestClient(create_app(app=stack_app))

    page = api.get("/dead-letters", params={"limit": 2}).json()
    rest = api.get("/dead-letters", params={"offset": 2, "limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2 and len(rest["items"]) == 1
    newest_first = [item["task_id"] for item in page["items"] + rest["items"]]
    assert sorted(newest_first) == sorted(ids)
    record_id = page["items"][0]["id"]
    assert api.get(f"/dead-letters/{record_id}").json()["task_id"] == newest_first[0]
    status = api.get(f"/task-status/{newest_first[0]}").json()
    assert status["status"] == "dead_lettered" and "NonRetryableError" in status["error"]
    assert api.get("/queues").json()["dead_letters"] == 3

    replayed = api.post(f"/dead-letters/{record_id}/replay")
    assert replayed.status_code == 202
    wait_accounted(stack_app, stack_dead_letters, [replayed.json()["task_id"]], timeout_s=30)

    assert api.delete(f"/dead-letters/{record_id}").status_code == 204
    missing = api.get(f"/dead-letters/{record_id}")
    assert missing.status_code == 404 and record_id in missing.json()["detail"]
    assert api.post("/dead-letters/nope/replay").status_code == 404
    assert api.delete("/dead-letters/nope").status_code == 404
    assert api.get("/dead-letters").json()["total"] == 3  # 3 - 1 deleted + 1 replay failed again


def test_cli_lists_shows_replays_and_purges_only_when_confirmed(
    stack_app, stack_worker, stack_dead_letters, stack_settings, stack_worker_env_file
):
    worker = stack_worker(concurrency=1)
    task_id = submit(stack_app, "diagnostics.always_fail", kwargs={"retryable": False})
    wait_accounted(stack_app, stack_dead_letters, [task_id], timeout_s=30)
    env = worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stack", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    listed = json.loads(cli("dlq", "list", "--json").stdout)
    assert [item["task_id"] for item in listed["items"]] == [task_id]
    record_id = listed["items"][0]["id"]
    assert json.loads(cli("dlq", "show", record_id, "--json").stdout)["task_id"] == task_id
    unknown = cli("dlq", "show", "no-such-id")
    assert unknown.returncode != 0 and "no-such-id" in unknown.stderr

    replayed = json.loads(cli("dlq", "replay", "--all", "--json").stdout)
    assert [pair["record_id"] for pair in replayed] == [record_id]
    wait_until(lambda: stack_dead_letters.count() == 2, 30, "the replay to fail again")

    refused = cli("dlq", "purge")
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert stack_dead_letters.count() == 2
    assert json.loads(cli("dlq", "purge", "--yes", "--json").stdout) == {"purged": 2}
    assert stack_dead_letters.count() == 0
    status = json.loads(cli("status", "--json").stdout)
    assert status["dead_letters"] == 0 and status["workers"] == [worker.hostname]
    assert set(status["queues"]) == {
        "default",
        "file_processing",
        "query_processing",
        "maintenance",
    }
