"""STACK_EXECUTION=direct|auto: a task runs in the submitting process, with no Redis and no
worker, and its status is still answered (the seeds' rollback plan)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stack import direct
from stack.api import create_app
from stack.app_factory import create_celery_app
from stack.errors import SettingsError
from stack.preflight import check_settings
from stack.settings import Settings
from stack.submit import submit
from stack.task_status import task_status

NO_REDIS = "redis://127.0.0.1:1/0"  # nobody listens: any Redis call would fail
ROOT = Path(__file__).resolve().parents[2]


def app_for(execution: str, **env: str):
    return create_celery_app(
        Settings.load(environ={"REDIS_URL": NO_REDIS, "STACK_EXECUTION": execution, **env})
    )


def wait_final(app, task_id: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        status = task_status(app, task_id)
        if status.status in ("success", "failure") or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def test_direct_runs_the_task_in_process_with_no_redis_and_answers_its_status():
    app = app_for("direct")
    task_id = submit(app, "diagnostics.echo", args=["hi"])
    status = wait_final(app, task_id)
    assert (status.status, status.result, status.error) == ("success", "hi", None)


def test_a_direct_failure_is_a_failure_status_with_the_error():
    app = app_for("direct")
    task_id = submit(app, "diagnostics.always_fail")
    status = wait_final(app, task_id)
    assert status.status == "failure" and status.error


def test_a_falsy_result_stays_the_result():
    app = app_for("direct")
    assert wait_final(app, submit(app, "diagnostics.echo", args=[0])).result == 0


def test_a_task_id_never_seen_is_pending_in_direct_mode_without_asking_redis():
    assert task_status(app_for("direct"), "never-seen").status == "pending"


def test_auto_falls_back_to_direct_while_the_broker_is_down_warning_each_time(caplog):
    app = app_for("auto")
    with caplog.at_level(logging.WARNING, logger="stack.submit"):
        first = submit(app, "diagnostics.echo", args=["one"])
        second = submit(app, "diagnostics.echo", args=["two"])
    warnings = [r.getMessage() for r in caplog.records if "STACK_EXECUTION=auto" in r.getMessage()]
    assert len(warnings) == 2 and "does not answer PING" in warnings[0]
    assert wait_final(app, first).result == "one" and wait_final(app, second).result == "two"


def test_production_refuses_direct_and_auto():
    for execution in ("direct", "auto"):
        settings = Settings.load(environ={"STACK_EXECUTION": execution})
        findings = [f for f in check_settings(settings, {}) if f.variable == "STACK_EXECUTION"]
        assert findings and findings[0].severity == "error"
    assert not [
        f for f in check_settings(Settings.load(environ={}), {}) if f.variable == "STACK_EXECUTION"
    ]
    with pytest.raises(SettingsError, match="refused in production"):
        submit(app_for("direct", STACK_PROFILE="production"), "diagnostics.echo", args=["x"])


def test_the_api_submits_and_answers_the_status_of_a_direct_task_with_no_redis():
    app = app_for("direct")
    with TestClient(create_app(app=app)) as api:
        accepted = api.post("/tasks", json={"name": "diagnostics.echo", "args": ["via api"]})
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + 10
        while (body := api.get(accepted.json()["status_url"]).json())["status"] != "success":
            assert time.monotonic() < deadline, body
            time.sleep(0.02)
    assert body["result"] == "via api"


def test_the_runs_kept_in_memory_are_bounded():
    runs = direct.Runs(limit=2)
    for n in range(3):
        runs.put(f"t{n}", direct.Run("success", result=n))
    assert runs.get("t0") is None and runs.get("t2") == direct.Run("success", result=2)


def test_the_cli_submit_waits_for_a_direct_success_with_no_redis(tmp_path):
    """The done-when: `STACK_EXECUTION=direct celery-stack submit diagnostics.echo --args
    '["hi"]' --wait 5` prints a success with no Redis running."""
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(ROOT)}
    command = ["submit", "diagnostics.echo", "--args", '["hi"]', "--wait", "5"]
    run = subprocess.run(
        [sys.executable, "-m", "stack", *command],
        cwd=tmp_path,
        env={**env, "STACK_EXECUTION": "direct", "REDIS_URL": NO_REDIS},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("success 'hi'")
