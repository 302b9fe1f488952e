"""The stack's metrics, counted by a real prefork worker and two real API processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stack.redis_command import free_port
from stack.settings import settings_env

pytestmark = pytest.mark.integration

KEY = "k3y-that-is-long-enough-for-production"
API_READY_TIMEOUT_S = 60.0
TASK_TIMEOUT_S = 30.0


@pytest.fixture
def stack_settings_overrides():
    return {"STACK_API_KEY": KEY, "STACK_RATE_LIMITS": "diagnostics.limited=2/s"}


class ApiProcess:
    """`uvicorn --factory stack.api:create_app` in a child process on a free port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "stack.api:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env={**os.environ, **env},
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + API_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API on port {self.port} exited ({self.process.returncode})")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"API on port {self.port} not ready in {API_READY_TIMEOUT_S} s")

    def submit(self, name: str, **body: object) -> str:
        response = httpx.post(
            f"{self.url}/tasks", json={"name": name, **body}, headers={"X-API-Key": KEY}
        )
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_apis(settings, count: int) -> Iterator[tuple[ApiProcess, ...]]:
    """``count`` API processes on the same settings, started side by side."""
    env = settings_env(settings)
    apis = tuple(ApiProcess(env) for _ in range(count))
    try:
        for api in apis:
            api.wait_ready()
        yield apis
    finally:
        for api in apis:
            api.stop()


@pytest.fixture
def two_apis(stack_app, stack_settings) -> Iterator[tuple[ApiProcess, ...]]:
    yield from serve_apis(stack_settings, 2)


@pytest.fixture
def one_api(stack_app, stack_settings) -> Iterator[ApiProcess]:
    for (api,) in serve_apis(stack_settings, 1):
        yield api


def wait_until(predicate, timeout_s: float = TASK_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "metrics did not settle"
        time.sleep(0.2)


def count(samples, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def test_counters_and_depths_match_a_batch_across_two_api_processes(
    two_apis, stack_app, stack_worker, stack_settings
):
    first, second = two_apis
    worker = stack_worker(queues=["default"], concurrency=2)
    default = f"{stack_settings.queue_prefix}default"
    parked = f"{stack_settings.queue_prefix}query_processing"  # no worker consumes it

    ids = [api.submit("diagnostics.echo", args=[n]) for n in range(5) for api in two_apis]
    ids.append(first.submit("diagnostics.fail", kwargs={"failures": 1}))  # one retry
    ids.append(second.submit("diagnostics.always_fail", kwargs={"retryable": False}))
    ids += [second.submit("diagnostics.limited", args=[n]) for n in range(4)]  # 2/s: deferrals
    for priority in ("critical", "high", "normal", "low", "low"):
        first.submit(
            "diagnostics.echo", args=["parked"], queue="query_processing", priority=priority
        )
    for task_id in ids:
        stack_app.AsyncResult(task_id).get(timeout=TASK_TIMEOUT_S, propagate=False)
    # Pool children write their counts within FLUSH_EVERY_S of a task's end.
    wait_until(lambda: count(first.metrics(), "celery_stack_tasks_succeeded_total") >= 15)

    scrapes = [first.metrics(), second.metrics()]
    assert scrapes[0] == scrapes[1]  # every API process reads the same totals
    samples = scrapes[0]
    total = "celery_stack_tasks_{}_total"
    echo = {"task": "diagnostics.echo", "queue": default}
    assert count(samples, total.format("submitted"), **echo) == 10
    assert count(samples, total.format("submitted"), task="diagnostics.echo", queue=parked) == 5
    assert count(samples, total.format("succeeded"), **echo) == 10
    assert count(samples, total.format("started"), **echo) == 10
    flaky = {"task": "diagnostics.fail", "queue": default}
    assert count(samples, total.format("submitted"), **flaky) == 1  # a retry is no resubmission
    assert count(samples, total.format("started"), **flaky) == 2
    assert count(samples, total.format("retried"), **flaky) == 1
    assert count(samples, total.format("succeeded"), **flaky) == 1
    doomed = {"task": "diagnostics.always_fail", "queue": default}
    assert count(samples, total.format("failed"), **doomed) == 1
    assert count(samples, total.format("dead_lettered"), **doomed) == 1
    limited = {"task": "diagnostics.limited", "queue": default}
    assert count(samples, total.format("submitted"), **limited) == 4  # deferrals republish
    assert count(samples, total.format("succeeded"), **limited) == 4
    deferred = count(samples, total.format("rate_limit_deferred"), **limited)
    assert deferred >= 1
    assert count(samples, total.format("started"), **limited) == 4 + deferred
    assert count(samples, "celery_stack_task_runtime_seconds_count", **echo) == 10
    assert count(samples, "celery_stack_task_queue_wait_seconds_count", **echo) == 10

    assert count(samples, "celery_stack_queue_depth", queue=parked) == 5  # over 4 priority lists
    assert count(samples, "celery_stack_queue_depth", queue=default) == 0
    assert count(samples, "celery_stack_dead_letters") == 1
    assert count(samples, "celery_stack_unacked_messages") == 0
    assert count(samples, "celery_stack_workers_up") == 1
    assert count(samples, "celery_stack_redis_up") == 1

    worker.stop()
    assert count(first.metrics(), "celery_stack_workers_up") == 0


def test_metrics_need_no_api_key_and_parse_with_nothing_recorded(one_api):
    samples = one_api.metrics()
    assert count(samples, "celery_stack_redis_up") == 1
    assert count(samples, "celery_stack_tasks_submitted_total") == 0
