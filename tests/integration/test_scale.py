"""Scaled workers: `up --scale worker=3` (or honcho's -c) and `celery-stack scale` at run time."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from stack.settings import Settings
from tests.integration.helpers import Batch
from tests.integration.test_control import cli, ps
from tests.integration.test_control import up as up  # the fixture, shared
from tests.integration.test_up import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # loaded cores: boots of 10 s+

HOST = socket.gethostname()


def ping(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "stack.celery_app", "inspect", "ping", "-t", "10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def test_three_scaled_workers_answer_ping_by_distinct_names_and_share_one_batch(up):
    from stack.app_factory import load_app

    stack = up("--only", "redis,worker", "-c", "worker=3")  # honcho's spelling
    table = stack.wait_ready()
    names = [f"worker.{k}@{HOST}" for k in (1, 2, 3)]
    assert [s["url"] for s in table["services"][1:]] == names
    assert [s["name"] for s in table["services"]] == ["redis", "worker.1", "worker.2", "worker.3"]
    replies = ping(stack.env)
    for name in names:
        assert f"{name}: OK" in replies, replies
    assert "DuplicateNodenameWarning" not in stack.log

    settings = Settings.load(environ=stack.env)
    batch = Batch(load_app(settings), settings)
    ids = batch.submit_records(60, seconds=0.2)  # long enough that one worker cannot take all
    accounting = batch.settle(timeout_s=180)
    accounting.assert_every_task_accounted_for()
    workers = {batch.worker_of(task_id) for task_id in ids}
    assert workers == set(names), workers


def test_scale_1_to_3_to_1_at_run_time_accounts_for_every_task(up):
    from stack.app_factory import load_app

    stack = up("--only", "redis,worker")
    stack.wait_ready()
    settings = Settings.load(environ=stack.env)
    batch = Batch(load_app(settings), settings)
    batch.submit_records(150, seconds=0.1)

    asked = time.monotonic()
    grown = cli(stack.env, "scale", "worker=3")
    up_s = time.monotonic() - asked
    assert grown.returncode == 0, grown.stderr
    rows = ps(stack.env)
    assert [r for r in rows if r.startswith("worker")] == ["worker", "worker.2", "worker.3"]
    assert {rows[n]["url"] for n in ("worker.2", "worker.3")} == {
        f"worker.2@{HOST}",
        f"worker.3@{HOST}",
    }
    assert all(row["state"] == "ready" for row in rows.values()), rows
    batch.submit_records(150, seconds=0.1)  # the three share this part

    shrunk = cli(stack.env, "scale", "worker=1")
    assert shrunk.returncode == 0, shrunk.stderr
    accounting = batch.settle(timeout_s=240)
    print(f"\nscale worker=3: both new workers ready {up_s:.2f} s after the command")
    accounting.assert_every_task_accounted_for()
    assert len(accounting.succeeded) == 300
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(ps(stack.env)) > 2:
        time.sleep(0.2)
    assert list(ps(stack.env)) == ["redis", "worker"]
    workers = {batch.worker_of(t) for t in batch.submitted}
    assert {f"worker.2@{HOST}", f"worker.3@{HOST}"} & workers, workers  # they did work

    for args, says in (
        (("scale", "redis=2"), "'redis' is not a Celery worker line of the stack"),
        (("scale", "nope=2"), "no service is named 'nope' (known: redis, worker)"),
        (("scale", "worker=-1"), "expected a whole number from 0 to 64"),
        (("scale", "worker=lots"), "expected a whole number from 0 to 64"),
        (("scale", "worker"), "write NAME=N"),
    ):
        refused = cli(stack.env, *args)
        assert refused.returncode != 0 and says in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr


def test_up_refuses_scaling_a_line_that_is_not_a_worker(up):
    stack = up("--only", "redis,worker", "--scale", "redis=2")
    assert stack.wait() == 1
    assert "'redis' is not a Celery worker line of the stack" in stack.log
    assert stack.lines == []
