"""Replays exactly once: concurrent replays of a record publish one task, and a failed publish
loses nothing. No worker runs: every replay stays in its queue, where it is counted."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.deadletter import DeadLetter, DeadLetterStore, Replay
from stack.errors import BrokerUnavailable
from stack.queues import priority_lists, queue_depths, queue_name
from stack.settings import Settings
from stack.submit import replay, replay_all

pytestmark = pytest.mark.integration

RACERS = 8
RECORDS = 20
CALL_TIMEOUT_S = 60


def add_record(store: DeadLetterStore, n: int = 0, **fields: Any) -> DeadLetter:
    record = DeadLetter(
        task_id=f"failed-{n}",
        name="diagnostics.echo",
        args=[f"value-{n}"],
        queue="default",
        priority="normal",
        exception_type="stack.tasks.diagnostics.DiagnosticFailure",
        exception_message="boom",
        reason="gave up after 4 attempts",
        attempts=4,
        first_failure_at=1.0,
        last_failure_at=2.0,
        **fields,
    )
    record_id, created = store.add(record)
    assert created
    return store.get(record_id)


def race(calls: int, call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` in ``calls`` threads released at once; their results (or exceptions)."""
    start = threading.Barrier(calls)

    def released() -> Any:
        start.wait(CALL_TIMEOUT_S)
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(calls) as pool:
        futures = [pool.submit(released) for _ in range(calls)]
        return [f.result(timeout=CALL_TIMEOUT_S) for f in futures]


def queued_ids(app: Celery, settings: Settings) -> list[str]:
    """Task ids of every message waiting in the default queue, at any priority."""
    client = app.backend.client
    lists = priority_lists(queue_name(settings, "default"))
    return [json.loads(m)["headers"]["id"] for key in lists for m in client.lrange(key, 0, -1)]


def test_concurrent_replays_of_one_record_publish_exactly_one_task(
    stack_app, stack_dead_letters, stack_settings
):
    record = add_record(stack_dead_letters)

    answers = race(RACERS, lambda: replay(stack_app, record.id))

    assert len(set(answers)) == 1, answers  # every caller is told the one replay's task id
    assert queued_ids(stack_app, stack_settings) == answers[:1]
    assert [r.task_id for r in stack_dead_letters.get(record.id).replays] == answers[:1]


def test_a_record_replayed_once_is_not_published_again_when_asked_again(
    stack_app, stack_dead_letters, stack_settings
):
    record = add_record(stack_dead_letters)

    first = replay(stack_app, record.id)
    again = replay(stack_app, record.id)

    assert again == first
    assert queued_ids(stack_app, stack_settings) == [first]
    assert len(stack_dead_letters.get(record.id).replays) == 1


def test_a_record_replayed_before_claims_existed_counts_as_replayed(
    stack_app, stack_dead_letters, stack_settings
):
    record = add_record(stack_dead_letters, replays=[Replay(task_id="earlier", at=3.0)])

    assert replay(stack_app, record.id) == "earlier"
    assert replay_all(stack_app) == []
    assert queued_ids(stack_app, stack_settings) == []


def test_two_concurrent_replay_alls_replay_each_record_once(
    stack_app, stack_dead_letters, stack_settings
):
    records = {add_record(stack_dead_letters, n).id for n in range(RECORDS)}

    first, second = race(2, lambda: replay_all(stack_app))

    pairs = first + second
    assert sorted(record_id for record_id, _ in pairs) == sorted(records)  # each once, by one
    assert sorted(queued_ids(stack_app, stack_settings)) == sorted(t for _, t in pairs)
    assert replay_all(stack_app) == []  # a third run finds nothing left to replay
    assert all(len(r.replays) == 1 for r in stack_dead_letters.page(0, RECORDS))


def test_concurrent_api_replays_answer_one_task_id_and_publish_one_task(
    stack_app, stack_dead_letters, stack_settings
):
    record = add_record(stack_dead_letters)
    api = create_app(app=stack_app)

    responses = race(RACERS, lambda: TestClient(api).post(f"/dead-letters/{record.id}/replay"))

    assert {r.status_code for r in responses} == {202}
    task_ids = {r.json()["task_id"] for r in responses}
    assert len(task_ids) == 1
    assert queued_ids(stack_app, stack_settings) == list(task_ids)
    assert sum(r.json()["created"] for r in responses) == 1  # one caller published it


def test_a_replay_whose_publish_fails_releases_its_claim_so_a_later_replay_publishes(
    stack_app, stack_dead_letters, stack_settings
):
    record = add_record(stack_dead_letters)
    client = stack_app.backend.client
    normal_list = priority_lists(queue_name(stack_settings, "default"))[2]
    client.set(normal_list, "not a list")  # Redis answers, but refuses the publish

    with pytest.raises(BrokerUnavailable, match="the task was not queued"):
        replay(stack_app, record.id)

    assert stack_dead_letters.get(record.id).replays == []
    client.delete(normal_list)
    task_id = replay(stack_app, record.id)  # at once: no claim left to wait out
    assert queued_ids(stack_app, stack_settings) == [task_id]
    assert sum(queue_depths(client, stack_settings).values()) == 1


def test_a_replay_while_redis_is_down_loses_nothing_and_works_once_it_is_back(
    stack_app, stack_dead_letters, stack_settings, stack_redis
):
    record = add_record(stack_dead_letters)
    stack_redis.stop()
    try:
        with pytest.raises(BrokerUnavailable):
            replay(stack_app, record.id)
    finally:
        stack_redis.start()

    task_id = replay(stack_app, record.id)

    assert queued_ids(stack_app, stack_settings) == [task_id]
    assert [r.task_id for r in stack_dead_letters.get(record.id).replays] == [task_id]


@pytest.mark.stack_settings(STACK_PUBLISH_TIMEOUT="0.2")  # claim timeout: 2 x 0.2 s + 3 s
def test_a_claim_whose_replayer_died_before_publishing_is_taken_over_under_its_task_id(
    stack_app, stack_dead_letters, stack_settings
):
    record = add_record(stack_dead_letters)
    orphan = stack_dead_letters.claim_replay(record.id, "orphaned-replay")  # then it "died"
    assert orphan.state == "claimed"

    task_id = replay(stack_app, record.id)  # waits out the claim timeout, then publishes

    assert task_id == "orphaned-replay"
    assert queued_ids(stack_app, stack_settings) == ["orphaned-replay"]
    assert [r.task_id for r in stack_dead_letters.get(record.id).replays] == ["orphaned-replay"]


@pytest.mark.stack_settings(STACK_DEAD_LETTER_MAX_ENTRIES="2")
def test_a_record_removed_by_delete_purge_or_retention_takes_its_replay_along(
    stack_app, stack_dead_letters
):
    store = stack_dead_letters
    deleted, retired = add_record(store, 0), add_record(store, 1)
    replay(stack_app, deleted.id)
    replay(stack_app, retired.id)

    store.delete(deleted.id)
    assert store.redis.hkeys(store.replays_key) == [retired.id.encode()]
    add_record(store, 2)
    add_record(store, 3)  # retention keeps the newest 2: `retired` goes, and its replay
    assert store.redis.hlen(store.replays_key) == 0

    replay(stack_app, store.page()[0].id)
    store.purge()
    assert store.redis.exists(store.replays_key) == 0
