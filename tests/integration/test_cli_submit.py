"""`celery-stack submit --wait` against real workers: exit 0 only for a success in time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stack.pytest_plugin import worker_environ

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60


@pytest.fixture
def submit(stack_app, stack_settings, stack_worker_env_file):
    env = worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stack", "submit", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    return run


def test_a_task_still_running_when_the_wait_ends_exits_1_saying_so_without_a_traceback(
    submit, stack_worker
):
    stack_worker(concurrency=1)
    warm = submit("diagnostics.echo", "--args", '["warm"]', "--wait", "30")
    assert warm.returncode == 0, warm.stderr  # the worker consumes: the next one will run

    run = submit("diagnostics.sleep", "--args", "[10]", "--wait", "2")

    assert run.returncode == 1
    assert "is still processing after 2 s" in run.stderr
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr
    assert run.stdout.split()[1] == "processing"


def test_a_success_exits_0_and_a_dead_letter_exits_1_with_its_error(submit, stack_worker):
    stack_worker()
    done = submit("diagnostics.echo", "--args", '[{"rows": 3}]', "--wait", "30", "--json")
    dead = submit("diagnostics.always_fail", "--kwargs", '{"retryable": false}', "--wait", "30")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"rows": 3}
    assert dead.returncode == 1 and "Traceback" not in dead.stderr
    assert "ended dead_lettered" in dead.stderr
