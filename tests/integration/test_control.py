"""`celery-stack ps | restart | stop | start | logs` against a running `up` (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from stack.settings import Settings
from tests.integration.helpers import Batch, wait_until
from tests.integration.test_up import ROOT, Up, clean_environ

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # loaded cores: boots of 10 s+

BATCH = 400
CLI_TIMEOUT_S = 180.0  # `restart` waits for the worker's boot on two loaded cores
COMMANDS = (
    ["ps"],
    ["ps", "--json"],
    ["restart", "worker"],
    ["stop", "worker"],
    ["start", "worker"],
    ["logs", "-n", "5"],
    ["logs", "-f", "worker"],
    ["scale", "worker=2"],
)


@pytest.fixture
def up(tmp_path):
    started: list[Up] = []

    def start(*args: str, **env: str) -> Up:
        started.append(Up(tmp_path, *args, **env))
        return started[-1]

    yield start
    for launched in started:
        launched.cleanup()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def ps(env: dict[str, str]) -> dict[str, dict]:
    result = cli(env, "ps", "--json")
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_ps_json_reports_each_service_with_a_live_pid_its_rss_and_url(up):
    stack = up("--only", "redis,api,worker")
    table = stack.wait_ready()
    rows = ps(stack.env)
    assert list(rows) == ["redis", "api", "worker"]
    for row in rows.values():
        assert row["state"] == "ready", row
        assert psutil.pid_exists(row["pid"]) and row["pid"] in {
            p.pid for p in stack.descendants()
        }, row
        assert row["rss_bytes"] > 0 and row["uptime_s"] > 0 and row["restarts"] == 0, row
    assert rows["api"]["url"] == f"http://127.0.0.1:{stack.api_port}/ui"
    assert rows["redis"]["url"] == stack.env["REDIS_URL"]
    assert rows["worker"]["url"] == table["services"][2]["url"]
    assert rows["worker"]["rss_bytes"] > rows["redis"]["rss_bytes"]  # a tree: the pool counts

    bad = cli(stack.env, "restart", "wroker")
    assert bad.returncode == 1
    assert "no service is named 'wroker' (known: redis, api, worker)" in bad.stderr
    assert "Traceback" not in bad.stderr

    text = cli(stack.env, "ps")
    assert text.returncode == 0 and "worker" in text.stdout and "ready" in text.stdout

    # the dashboard's overview shows the same services, asked over the same socket
    overview = httpx.get(f"http://127.0.0.1:{stack.api_port}/ui/api/overview", timeout=30).json()
    shown = {row["name"]: row for row in overview["services"]}
    assert list(shown) == ["redis", "api", "worker"]
    assert {n: (r["pid"], r["url"]) for n, r in shown.items()} == {
        n: (r["pid"], r["url"]) for n, r in rows.items()
    }


def test_stop_then_start_one_service_while_the_others_keep_running(up):
    stack = up("--only", "redis,worker")
    stack.wait_ready()
    before = ps(stack.env)
    stopped = cli(stack.env, "stop", "worker")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: ps(stack.env)["worker"]["state"] == "stopped", 60, "worker stopped")
    assert not psutil.pid_exists(before["worker"]["pid"]) or _zombie(before["worker"]["pid"])
    assert ps(stack.env)["redis"]["pid"] == before["redis"]["pid"]

    started = cli(stack.env, "start", "worker")
    assert started.returncode == 0, started.stderr
    assert "worker ready" in started.stdout
    after = ps(stack.env)["worker"]
    assert after["state"] == "ready" and after["pid"] != before["worker"]["pid"]
    assert after["restarts"] == 1


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_restart_worker_while_a_batch_runs_loses_no_task(up):
    from stack.app_factory import load_app

    stack = up("--only", "redis,worker")
    stack.wait_ready()
    settings = Settings.load(environ=stack.env)
    batch = Batch(load_app(settings), settings)
    batch.submit_records(BATCH, seconds=0.1)  # ~20 s of work on two cores
    batch.wait_until(lambda a: len(a.succeeded) >= 10, timeout_s=60)
    old_pid = ps(stack.env)["worker"]["pid"]
    asked = time.monotonic()
    restarted = cli(stack.env, "restart", "worker")
    ready_s = time.monotonic() - asked
    assert restarted.returncode == 0, restarted.stderr
    done_at_ready = len(batch.account().succeeded)
    assert done_at_ready < BATCH, "the batch was over before the restart: make it longer"
    batch.wait_until(lambda a: len(a.succeeded) > done_at_ready, timeout_s=60)
    consuming_s = time.monotonic() - asked
    accounting = batch.settle(timeout_s=180)
    print(
        f"\nrestart worker: ready again {ready_s:.2f} s after the command, consuming "
        f"{consuming_s:.2f} s after it; {accounting.summary()}"
    )
    accounting.assert_every_task_accounted_for()
    assert len(accounting.succeeded) == BATCH
    assert ps(stack.env)["worker"]["pid"] != old_pid
    assert "worker: restarting (warm: running tasks finish first)" in stack.log
    assert "worker exited" not in stack.log  # a requested stop, not a crash


def test_logs_n_and_follow_show_that_services_lines(up):
    from stack.app_factory import load_app
    from stack.submit import submit

    stack = up("--only", "redis,worker")
    stack.wait_ready()
    last = cli(stack.env, "logs", "-n", "3", "worker")
    assert last.returncode == 0, last.stderr
    lines = last.stdout.splitlines()
    assert len(lines) == 3 and "ready." in lines[-1], lines
    assert "Ready to accept connections" not in last.stdout  # Redis's, not the worker's

    follower = subprocess.Popen(
        [sys.executable, "-m", "stack", "logs", "-f", "-n", "1", "worker"],
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert "ready." in follower.stdout.readline()  # its -n 1: it follows from here
        settings = Settings.load(environ=stack.env)
        task_id = submit(load_app(settings), "diagnostics.echo", ["followed"])
        wait_until(lambda: task_id in (stack.log_path.read_text()), 60, "the task in the log")
        stack.process.send_signal(signal.SIGINT)
        assert stack.wait() == 0, stack.log[-3000:]
        out, err = follower.communicate(timeout=30)  # ends once the stack is gone
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert task_id in out and "succeeded" in out, out[-3000:]
    assert "Ready to accept connections" not in out


def test_every_command_says_no_stack_runs_where_none_does(tmp_path):
    env = {**clean_environ(), "STACK_DATA_DIR": str(tmp_path / "data")}
    for args in COMMANDS:
        result = cli(env, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"no stack runs in {tmp_path / 'data'}" in result.stderr, (args, result.stderr)
        assert "celery-stack up" in result.stderr and "Traceback" not in result.stderr


def test_a_socket_left_by_a_sigkilled_launcher_gives_the_same_clear_error(up, tmp_path):
    stack = up("--only", "redis")
    stack.wait_ready()
    sock = tmp_path / "data" / "control.sock"
    assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
    stack.process.kill()
    stack.process.wait(10)
    assert sock.exists(), "the launcher had no chance to remove it: the stale case"
    for args in COMMANDS:
        result = cli(stack.env, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert "left from a launcher that died" in result.stderr, (args, result.stderr)
        assert "celery-stack up" in result.stderr and "Traceback" not in result.stderr


def test_a_stale_socket_file_nobody_listens_on_reads_as_no_stack(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(data / "control.sock"))
    listener.close()  # the file stays, nobody listens: what a SIGKILL leaves
    env = {**clean_environ(), "STACK_DATA_DIR": str(data)}
    result = cli(env, "ps")
    assert result.returncode == 1
    assert "left from a launcher that died" in result.stderr
    assert Path(data / "control.sock").exists()
