"""The API's fast publish path (stack.publish): what it stores, a stock Celery worker consumes.

The consumer is a plain ``celery worker`` of a minimal app that imports nothing of
the stack: the messages must be Celery's own, routed and prioritised as kombu does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from stack.api import create_app
from stack.connection import redis_client
from stack.queues import queue_depths, queue_name
from tests.integration.helpers import wait_until, write_project

pytestmark = pytest.mark.integration

PLAIN_APP = """
    import json
    import os

    import redis
    from celery import Celery
    from kombu import Queue

    URL = os.environ["PLAIN_BROKER"]
    app = Celery("plain", broker=URL)
    app.conf.update(
        task_queues=[Queue(name) for name in os.environ["PLAIN_QUEUES"].split(",")],
        broker_transport_options={
            "queue_order_strategy": "priority", "priority_steps": [0, 3, 6, 9]
        },
        worker_prefetch_multiplier=1,
        task_acks_late=True,
    )
    log = redis.Redis.from_url(URL)


    @app.task(name="diagnostics.echo", bind=True)
    def echo(self, *args, **kwargs):
        info = self.request.delivery_info or {}
        entry = {"id": self.request.id, "args": list(args), "queue": info.get("routing_key"),
                 "priority": info.get("priority")}
        log.rpush(os.environ["PLAIN_LOG"], json.dumps(entry))
"""


@pytest.fixture
def api(stack_app: Celery, stack_settings) -> Iterator[TestClient]:
    with TestClient(create_app(stack_settings, stack_app)) as client:
        yield client


def post(api: TestClient, args: list[object], priority: str, queue: str | None = None) -> str:
    answer = api.post(
        "/tasks",
        json={"name": "diagnostics.echo", "args": args, "priority": priority, "queue": queue},
    )
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def start_plain_worker(tmp_path: Path, url: str, queues: list[str], log: str) -> subprocess.Popen:
    write_project(tmp_path, {"plainapp.py": PLAIN_APP})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "STACK_"))}
    env.update(PYTHONPATH=str(tmp_path), PLAIN_BROKER=url, PLAIN_QUEUES=",".join(queues))
    env["PLAIN_LOG"] = log
    command = [sys.executable, "-m", "celery", "-A", "plainapp", "worker", "-P", "solo"]
    command += ["-Q", ",".join(queues), "--without-gossip", "--without-mingle", "-l", "warning"]
    return subprocess.Popen(command, cwd=tmp_path, env=env)


def test_a_stock_celery_worker_consumes_by_priority_queue_and_task_id(
    api, stack_app, stack_settings, tmp_path
):
    default, maintenance = (queue_name(stack_settings, q) for q in ("default", "maintenance"))
    posted = {level: post(api, [level], level) for level in ("low", "normal", "high", "critical")}
    routed = post(api, ["routed"], "high", queue="maintenance")
    # 202 means stored: every message is in its list before any worker runs.
    depths = queue_depths(redis_client(stack_settings), stack_settings)
    assert (depths["default"], depths["maintenance"]) == (4, 1)

    log = f"{stack_settings.key_prefix}plain-log"
    client = redis_client(stack_settings)
    worker = start_plain_worker(tmp_path, stack_settings.broker_url, [default, maintenance], log)
    try:
        wait_until(lambda: client.llen(log) == 5, 60, "the stock worker to run all five")
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        worker.wait(timeout=30)
    ran = [json.loads(entry) for entry in client.lrange(log, 0, -1)]
    by_id = {entry["id"]: entry for entry in ran}
    assert set(by_id) == {*posted.values(), routed}
    assert by_id[routed]["queue"] == maintenance and by_id[routed]["args"] == ["routed"]
    in_default = [entry["args"][0] for entry in ran if entry["queue"] == default]
    assert in_default == ["critical", "high", "normal", "low"]
    steps = {"critical": 0, "high": 3, "normal": 6, "low": 9}
    assert all(by_id[posted[level]]["priority"] == step for level, step in steps.items())


def test_each_publish_sends_the_task_sent_event_flower_reads(api, stack_settings, tmp_path):
    """``celery events --dump`` reads events as Flower does (a stock EventReceiver)."""
    dump = tmp_path / "events.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "STACK_"))}
    command = [sys.executable, "-m", "celery", "-b", stack_settings.broker_url, "events"]
    with dump.open("wb") as sink:
        listener = subprocess.Popen([*command, "--dump"], env=env, stdout=sink, stderr=sink)
    posted: list[str] = []

    def sent_event_seen() -> bool:  # the listener subscribes at some point: publish until then
        posted.append(post(api, ["event"], "normal"))
        text = dump.read_text()
        return any(f"task sent: diagnostics.echo({task_id})" in text for task_id in posted)

    try:
        wait_until(sent_event_seen, 60, "a task-sent event")
    finally:
        listener.terminate()
        listener.wait(timeout=30)
    line = next(x for x in dump.read_text().splitlines() if "task sent: diagnostics.echo(" in x)
    assert f"queue={queue_name(stack_settings, 'default')}" in line
    assert "args=['event']" in line


def test_each_publish_is_counted_as_submitted_once(api, stack_app, stack_settings):
    for n in range(3):
        post(api, [n], "normal")
    recorder_key = f"{stack_settings.key_prefix}metrics:counter:submitted"
    counts = redis_client(stack_settings).hgetall(recorder_key)
    assert sum(int(v) for v in counts.values()) == 3
