"""`celery-stack doctor` against a real Redis and real workers: each failure named with its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stack.checks.doctor import run_doctor
from stack.connection import redis_client
from stack.pytest_plugin import worker_environ
from stack.submit import submit

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60


def by_name(report):
    return {check.name: check for check in report.checks}


def test_doctor_fails_on_a_dead_redis_and_says_how_to_start_one(
    stack_app, stack_settings, stack_redis
):
    stack_redis.stop()

    report = run_doctor(stack_settings, {})

    checks = by_name(report)
    assert not report.ok
    assert checks["redis"].level == "fail"
    assert "does not answer PING" in checks["redis"].detail
    assert "REDIS_URL" in checks["redis"].fix
    assert checks["workers"].level == "skip"


def test_doctor_fails_when_no_worker_answers_ping(stack_app, stack_settings):
    report = run_doctor(stack_settings, {})

    checks = by_name(report)
    assert not report.ok
    assert checks["redis"].level == "ok"
    assert checks["workers"].level == "fail"
    assert "celery -A stack.celery_app worker" in checks["workers"].fix
    assert checks["round trip"].level == "skip"


def test_doctor_passes_with_a_worker_and_times_a_real_echo_round_trip(
    stack_app, stack_settings, stack_worker
):
    worker = stack_worker(queues=["default", "file_processing"])

    report = run_doctor(stack_settings, {})

    checks = by_name(report)
    assert report.ok, report.as_dict()
    assert checks["workers"].data["workers"] == {worker.hostname: ["default", "file_processing"]}
    assert checks["round trip"].level == "ok"
    assert checks["round trip"].data["elapsed_ms"] > 0
    assert checks["queues"].level == "warn"
    assert "query_processing, maintenance" in checks["queues"].detail


def test_doctor_warns_about_an_evicting_redis_without_persistence(
    stack_app, stack_settings, stack_worker
):
    stack_worker()
    client = redis_client(stack_settings)
    saved = {key: client.config_get(key)[key] for key in ("maxmemory-policy", "appendonly")}
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("appendonly", "no")
    try:
        report = run_doctor(stack_settings, {})
    finally:
        for key, value in saved.items():
            client.config_set(key, value)
        client.close()

    checks = by_name(report)
    assert report.ok  # tasks still run: these are warnings
    assert checks["redis eviction"].level == "warn"
    assert "allkeys-lru" in checks["redis eviction"].detail
    assert "noeviction" in checks["redis eviction"].fix
    assert checks["redis persistence"].level == "warn"


def test_doctor_notices_the_heartbeat_of_the_maintenance_health_check(
    stack_app, stack_settings, stack_worker
):
    stack_worker()
    before = by_name(run_doctor(stack_settings, {}))["beat"]
    task_id = submit(stack_app, "maintenance.health_check")
    stack_app.AsyncResult(task_id).get(timeout=30)
    after = by_name(run_doctor(stack_settings, {}))["beat"]

    assert before.level == "warn"
    assert after.level == "ok"
    assert "last health check" in after.detail


def test_the_cli_exits_1_without_a_worker_and_0_with_one_printing_json(
    stack_app, stack_settings, stack_worker, stack_worker_env_file
):
    env = worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)

    def doctor():
        return subprocess.run(
            [sys.executable, "-m", "stack", "doctor", "--json"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    without = doctor()
    stack_worker()
    with_worker = doctor()

    assert without.returncode == 1, without.stderr
    assert json.loads(without.stdout)["ok"] is False
    assert with_worker.returncode == 0, with_worker.stdout + with_worker.stderr
    assert json.loads(with_worker.stdout)["ok"] is True


def test_a_queue_holding_messages_with_no_consumer_is_named_by_doctor_status_and_get_queues(
    stack_app, stack_settings, stack_worker
):
    """Before, status and GET /queues showed the depth only, and doctor said "no worker
    consumes maintenance" without saying tasks already wait there for ever."""
    from fastapi.testclient import TestClient

    from stack.api import create_app
    from stack.checks.overview import queue_overview
    from stack.cli.tasks import render_overview

    stack_worker(queues=["default"])
    submit(stack_app, "maintenance.health_check")
    submit(stack_app, "maintenance.health_check")

    checks = by_name(run_doctor(stack_settings, {}))
    assert checks["queues"].level == "warn"
    assert "maintenance holds 2 message(s) with no consumer" in checks["queues"].detail
    assert checks["queues"].data["holding"] == {"maintenance": 2}

    overview = queue_overview(stack_app, workers=True)
    assert overview.queues["maintenance"] == 2
    assert overview.unconsumed == ["maintenance"]
    assert "WARNING: maintenance holds 2 message(s) but no worker consumes it" in (
        render_overview(overview)
    )
    with TestClient(create_app(app=stack_app)) as api:
        body = api.get("/queues").json()
    assert body["unconsumed"] == ["maintenance"], body


def test_a_user_apps_queues_are_the_overviews_and_a_waiting_one_without_worker_is_named(
    stack_app, stack_settings
):
    from celery import Celery

    from stack.app_factory import install_stack
    from stack.checks.overview import queue_overview

    user = Celery("shop", set_as_current=False)
    user.conf.task_routes = {"shop.mail.*": {"queue": "mail"}}

    @user.task(name="shop.mail.send", shared=False)
    def send() -> None:
        return None

    app = install_stack(user, stack_settings)  # stack_app: the database flushed first
    try:
        submit(app, "shop.mail.send")
        overview = queue_overview(app)
        assert overview.queues == {"celery": 0, "mail": 1}
        assert overview.unconsumed == ["mail"]
    finally:
        app.close()
