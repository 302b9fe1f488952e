"""Four hosts on one machine (network namespaces): Redis, the API, two worker hosts.

A batch submitted through the API is shared by both worker hosts; one host's
cable is pulled mid-batch. Its unacked tasks come back after the (shortened)
visibility timeout and run on the other host: every task is accounted for and
no `diagnostics.record` effect is applied twice (its token guards the effect).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from stack.checks.readiness import ping_workers
from stack.connection import redis_client
from stack.harness.worker_process import WorkerProcess
from stack.pytest_plugin import physical_queues, worker_environ
from stack.queues import UNACKED_KEY
from tests.integration.helpers import Batch, wait_until
from tests.integration.netns import Host, Network, unavailable_reason

# Not marked chaos: its Redis is its own redis-server whatever the backend, so the
# chaos re-run on the local backend would only repeat it.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BATCH = 2_000
TASK_SECONDS = 0.01  # long enough that a worker host always has tasks in flight
VISIBILITY_TIMEOUT_S = 5  # shortened: the cut host's tasks come back within seconds
REDIS_PORT = 6379  # the Redis host's own address: no port clash with anything else
API_PORT = 8000
SUBMIT_THREADS = 8
READY_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 150.0
HELD_AFTER_CUT_S = 1.0  # a message still unacked this long after the cut is the cut host's
CUT_AFTER = BATCH // 4  # tasks succeeded before the cable is pulled
HEALED_WAIT_S = 30.0  # the cut host's sockets may take this long to notice the link is back
HEALED_WATCH_S = 3.0  # then it has this long to run what it held, were it to
API_KEY = "multi-host-test-key"


@dataclass
class NetnsWorker(WorkerProcess):
    """A real worker whose process runs inside a host namespace."""

    host: Host | None = None

    def command(self) -> list[str]:
        assert self.host is not None
        return self.host.command(super().command())


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"multi-host test needs network namespaces: {reason}")
    net = Network()
    try:
        net.create()
        for label in ("redis", "api", "worker-a", "worker-b"):
            net.add_host(label)
        yield net
    finally:
        net.destroy()  # kills what runs inside, deletes namespaces and links, even on failure


@pytest.fixture
def redis_host(network: Network, tmp_path: Path) -> Iterator[str]:
    """redis-server on the Redis host; its URL as every other host sees it."""
    host = network.hosts["redis"]
    log = (tmp_path / "redis.log").open("wb")
    server = subprocess.Popen(
        host.command(
            [
                *("redis-server", "--bind", host.address, "--port", str(REDIS_PORT)),
                *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
                *("--dir", str(tmp_path)),
            ]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://{host.address}:{REDIS_PORT}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        wait_until(lambda: _pings(client), READY_TIMEOUT_S, f"redis-server on {host.namespace}")
        yield url
    finally:
        server.kill()
        server.wait()
        log.close()


def _pings(client: redis.Redis[bytes]) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def stack_settings_overrides(redis_host: str) -> dict[str, Any]:
    return {
        "REDIS_URL": redis_host,
        "STACK_VISIBILITY_TIMEOUT": VISIBILITY_TIMEOUT_S,
        "STACK_API_KEY": API_KEY,
    }


@pytest.fixture
def host_env(stack_settings: Any, stack_worker_env_file: Path) -> dict[str, str]:
    return worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)


@pytest.fixture
def api_url(network: Network, host_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The stack's API (uvicorn) on the API host, reaching Redis over the switch."""
    host = network.hosts["api"]
    log = (tmp_path / "api.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "--factory", "stack.api:create_app"]
    command += ["--host", host.address, "--port", str(API_PORT), "--log-level", "warning"]
    api = subprocess.Popen(host.command(command), env=host_env, stdout=log, stderr=log)
    url = f"http://{host.address}:{API_PORT}"
    try:
        wait_until(lambda: _healthy(url), READY_TIMEOUT_S, f"the API on {host.namespace}")
        yield url
    finally:
        api.kill()
        api.wait()
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def submit_through_api(api_url: str, count: int) -> list[tuple[str, str]]:
    """POST ``count`` `diagnostics.record` tasks; (task id, token) of each, in order."""
    headers = {"X-API-Key": API_KEY}

    def post(client: httpx.Client) -> tuple[str, str]:
        token = uuid.uuid4().hex
        body = {"name": "diagnostics.record", "args": [token], "kwargs": {"seconds": TASK_SECONDS}}
        response = client.post(f"{api_url}/tasks", json=body, headers=headers)
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"]), token

    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        return list(pool.map(lambda _: post(client), range(count)))


def reconnected(app: Any, hostname: str) -> bool:
    """Whether ``hostname`` answers a ping within HEALED_WAIT_S of its link coming back."""
    deadline = time.monotonic() + HEALED_WAIT_S
    while time.monotonic() < deadline:
        if ping_workers(app, 1.0, destination=[hostname]):
            return True
    return False


def unacked_task_ids(batch: Batch) -> set[str]:
    """Ids of the delivered, not yet acked messages (kombu's ``unacked`` hash) of ``batch``."""
    client = redis_client(batch.settings)
    try:
        entries = client.hvals(UNACKED_KEY)
    finally:
        client.close()
    ids = {json.loads(entry)[0]["headers"]["id"] for entry in entries}
    return ids & set(batch.submitted)


def by_host(batch: Batch) -> Counter[str]:
    """Succeeded tasks per worker node name (as stored in each result)."""
    results = batch.results(list(batch.submitted))
    return Counter(
        str(meta.get("worker")) for meta in results.values() if meta and meta["status"] == "SUCCESS"
    )


def test_a_batch_through_the_api_survives_a_worker_host_losing_its_link(
    network, api_url, stack_app, stack_settings, host_env, batch, tmp_path
):
    queues = physical_queues(stack_settings, None, stack_app) or []
    workers = {}
    for label in ("worker-a", "worker-b"):
        host = network.hosts[label]
        workers[label] = NetnsWorker(
            app=stack_app,
            env=host_env,
            inherit_env=False,
            queues=queues,
            concurrency=2,
            hostname=f"{label}@{host.address}",
            log_path=tmp_path / f"{label}.log",
            host=host,
        )
    submitted = submit_through_api(api_url, BATCH)  # all queued first: both hosts stay busy
    for task_id, token in submitted:
        batch.add(task_id, token)
    try:
        for worker in workers.values():
            worker.start(wait=False)
        for worker in workers.values():
            worker.wait_ready()
        a, b = workers["worker-a"], workers["worker-b"]
        wait_until(
            lambda: sum(by_host(batch).values()) >= CUT_AFTER,
            SETTLE_TIMEOUT_S,
            f"{CUT_AFTER} tasks done before the cut",
        )
        network.cut(network.hosts["worker-b"])
        cut_at = time.monotonic()
        before_cut = by_host(batch)
        time.sleep(HELD_AFTER_CUT_S)  # host A acks its own within milliseconds
        stranded = unacked_task_ids(batch)
        # Finished on B before the cut but not yet acked (acks_late acks after the result):
        # they come back too, and their stored success stands.
        done_on_b = {tid for tid in stranded if batch.worker_of(tid) == b.hostname}
        wait_until(
            lambda: all(batch.account().states[t] == "SUCCESS" for t in stranded),
            SETTLE_TIMEOUT_S,
            "the cut host's unacked tasks to succeed elsewhere",
        )
        back_after_s = time.monotonic() - cut_at
        accounting = batch.settle(SETTLE_TIMEOUT_S)
        after = by_host(batch)
        finished_by = {tid: batch.worker_of(tid) for tid in stranded}
        # The partition heals: host B may still hold the messages it took. Whatever it
        # does with them now, no effect may be applied twice and no task change outcome.
        network.reconnect(network.hosts["worker-b"])
        healed = reconnected(stack_app, b.hostname)
        time.sleep(HEALED_WATCH_S)
        after_heal = batch.account()
        late = {tid for tid in stranded if batch.worker_of(tid) != finished_by[tid]}
    finally:
        for worker in workers.values():
            worker.kill()

    figures = (
        f"{accounting.summary()}; per host before cut {dict(before_cut)}, at end {dict(after)}; "
        f"{len(stranded)} unacked on B at the cut ({len(done_on_b)} already done there, "
        f"{accounting.reruns} started there), "
        f"all succeeded on A {back_after_s:.1f} s after the cut; after the link came back "
        f"B {'answered' if healed else 'did not answer'} a ping, reruns {after_heal.reruns}, "
        f"{len(late)} result(s) rewritten late by B"
    )
    print(f"\nmulti-host: {figures}")
    assert len(batch.submitted) == BATCH
    accounting.assert_every_task_accounted_for()
    accounting.assert_no_effect_applied_twice()
    assert before_cut[a.hostname] and before_cut[b.hostname], f"one host idle: {figures}"
    assert stranded - done_on_b, f"host B held no unfinished task at the cut: ({figures})"
    moved = {finished_by[tid] for tid in stranded - done_on_b}
    assert moved == {a.hostname}, f"B's unfinished tasks finished by {moved}: {figures}"
    assert after[b.hostname] == before_cut[b.hostname], f"B worked without a link: {figures}"
    after_heal.assert_every_task_accounted_for()
    after_heal.assert_no_effect_applied_twice()
    assert after_heal.states == accounting.states, f"an outcome changed after the heal: {figures}"
