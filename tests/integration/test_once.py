"""One-shot lines and start-up progress, through `up` run as a subprocess.

A `release:` line (or `up --once NAME`) runs to completion before anything else
starts; a failing one stops the launch with its log. Progress: plain lines when
stdout is a pipe, a live block when it is a terminal (a pty).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stack.redis_command import port_is_free
from tests.integration.helpers import write_project
from tests.integration.test_up import READY_TIMEOUT_S, STOP_TIMEOUT_S, Up, clean_environ, free_port

pytestmark = pytest.mark.integration

# `check` exits at once unless the one-shot line wrote its marker before `check` started.
PROJECT = {
    "Procfile": """
        release: python -c "import pathlib; pathlib.Path('migrated').write_text('ok')"
        check: test -f migrated && exec python -c "import time; time.sleep(10**6)"
    """,
}


@pytest.fixture
def up(tmp_path):
    started: list[Up] = []

    def start(*args: str, cwd: Path, **env: str) -> Up:
        started.append(Up(tmp_path, *args, cwd=cwd, **env))
        return started[-1]

    yield start
    for launched in started:
        launched.cleanup()


def test_a_release_line_runs_to_completion_first_and_shows_as_done(up, tmp_path):
    project = write_project(tmp_path / "p", PROJECT)
    stack = up(cwd=project)
    table = stack.wait_ready()
    states = {row["name"]: row["state"] for row in table["services"]}
    assert states == {"redis": "ready", "release": "done", "check": "ready"}
    assert (project / "migrated").read_text() == "ok"
    assert "release done (rc=0)" in stack.log
    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0


def test_a_failing_one_shot_line_stops_the_launch_with_its_log_and_a_non_zero_exit(up, tmp_path):
    project = write_project(
        tmp_path / "p",
        {
            "Procfile": """
                seed: python -c "print('loading fixtures'); raise SystemExit('fixture 3 broken')"
                check: python -c "import time; time.sleep(10**6)"
            """
        },
    )
    stack = up("--once", "seed", cwd=project)
    assert stack.wait(READY_TIMEOUT_S) == 1
    log = stack.log
    assert "one-shot line 'seed' exited (rc=1)" in log
    assert "fixture 3 broken" in log.split("one-shot line 'seed' exited", 1)[1]  # its log, shown
    assert "check ready" not in log and "redis ready" not in log
    assert port_is_free(stack.redis_port)  # nothing else started


def test_once_naming_no_line_is_a_clear_error(up, tmp_path):
    project = write_project(tmp_path / "p", PROJECT)
    stack = up("--once", "migrate", cwd=project)
    assert stack.wait(STOP_TIMEOUT_S) == 1
    assert "--once names migrate, which the Procfile does not define" in stack.log
    assert "Traceback" not in stack.log


def test_reload_is_refused_in_production(up, tmp_path):
    project = write_project(tmp_path / "p", PROJECT)
    stack = up("--reload", "--profile", "production", cwd=project)
    assert stack.wait(STOP_TIMEOUT_S) == 1
    assert "--reload is for the dev profile" in stack.log


def plain_env(tmp_path: Path) -> dict[str, str]:
    return {
        **clean_environ(),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "STACK_DATA_DIR": str(tmp_path / "data"),
    }


def test_progress_is_plain_lines_when_stdout_is_not_a_terminal(tmp_path):
    project = write_project(tmp_path / "p", PROJECT)
    process = subprocess.Popen(
        [sys.executable, "-m", "stack", "up"],
        cwd=project,
        env=plain_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = read_until(process.stdout.fileno(), b"Ctrl-C stops them all", process)
    stop(process)
    text = out.decode(errors="replace")
    assert "\x1b[" not in text  # no colour, no cursor movement
    assert "check ready" in text and "services ready in" in text


def test_progress_is_a_live_block_on_a_terminal_then_the_table(tmp_path):
    project = write_project(tmp_path / "p", PROJECT)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "stack", "up"],
        cwd=project,
        env={**plain_env(tmp_path), "TERM": "xterm", "COLUMNS": "120"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    try:
        out = read_until(leader, b"Ctrl-C stops them all", process)
    finally:
        stop(process)
        os.close(leader)
    text = out.decode(errors="replace")
    block = text.split("services ready in", 1)[0]
    assert "\x1b[2K" in block or "\x1b[1A" in block  # the block redrawn in place
    assert "starting" in block or "waiting" in block
    assert "service" in text and "state" in text  # the table after it


def read_until(fd: int, marker: bytes, process: subprocess.Popen) -> bytes:
    out = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while marker not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty closed: the process ended
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    assert marker in out, out.decode(errors="replace")[-3000:]
    return out


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
