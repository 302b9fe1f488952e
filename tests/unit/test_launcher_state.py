"""The launch's state file and reaping, against real (tiny) processes."""

import io
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from stack.launcher.state import LaunchState, Proc, reap, stale_states
from stack.launcher.watchdog import DONE, Watchdog, watch

PARENT_AND_CHILD = "sleep 30 & exec sleep 31"  # a main process with a child of its own


@pytest.fixture
def started():
    """Start tiny processes in sessions of their own; whatever a test leaves is killed."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(command: str = "exec sleep 30") -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, shell=True, start_new_session=True)
        processes.append(process)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and psutil.Process(process.pid).name() != "sleep":
            time.sleep(0.01)
        return process

    yield start
    for process in processes:
        for child in _descendants(process.pid):
            child.kill()
        process.kill()
        process.wait(5)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def a_dead_launcher() -> Proc:
    return Proc(os.getpid(), psutil.Process().create_time() - 1000)  # our pid, not our start


def test_the_state_records_pid_and_start_time_and_round_trips(tmp_path, started):
    process = started()
    state = LaunchState.create(tmp_path)
    state.record("worker", 0, [process.pid])
    loaded = LaunchState.load(state.path)
    assert loaded is not None
    assert loaded.launcher == Proc(os.getpid(), psutil.Process().create_time())
    assert loaded.services["worker"].main == Proc(
        process.pid, psutil.Process(process.pid).create_time()
    )


def test_reaping_stops_a_recorded_process_and_its_descendants(tmp_path, started):
    process = started(PARENT_AND_CHILD)
    child = _descendants(process.pid)[0]
    state = LaunchState(tmp_path / "launcher-1.json", a_dead_launcher())
    state.record("worker", 0, [process.pid])
    assert reap(state, grace_s=1) == ["worker"]
    assert not running(process.pid) and not running(child.pid)


def test_a_pid_whose_start_time_does_not_match_is_never_signalled(tmp_path, started):
    stranger = started()
    state = LaunchState(tmp_path / "launcher-1.json", a_dead_launcher())
    state.services["worker"] = state_record(stranger.pid, started_s_ago=100)
    assert reap(state, grace_s=0.2) == []
    assert running(stranger.pid)


def state_record(pid: int, started_s_ago: float):
    from stack.launcher.state import ServiceRecord

    return ServiceRecord("worker", 0, Proc(pid, psutil.Process(pid).create_time() - started_s_ago))


def test_dependents_are_reaped_before_redis(tmp_path, started):
    redis, worker = started(), started("trap '' TERM; sleep 30 & wait")  # ignores the warm stop
    state = LaunchState(tmp_path / "launcher-1.json", a_dead_launcher())
    state.record("redis", 1, [redis.pid])
    state.record("worker", 0, [worker.pid])
    assert reap(state, grace_s=0.3) == ["worker", "redis"]
    assert not running(redis.pid) and not running(worker.pid)


def test_a_state_whose_launcher_runs_is_not_stale_and_a_dead_ones_is(tmp_path):
    LaunchState.create(tmp_path).save()  # ours: running
    dead = LaunchState(tmp_path / "launcher-2.json", a_dead_launcher())
    dead.save()
    assert [s.path.name for s in stale_states(tmp_path)] == ["launcher-2.json"]


def test_a_half_written_state_file_is_dropped(tmp_path):
    (tmp_path / "launcher-3.json").write_text('{"launcher": {"pid": 1')
    assert stale_states(tmp_path) == []
    assert not (tmp_path / "launcher-3.json").exists()


def test_the_watchdog_does_nothing_once_the_launcher_said_done(tmp_path, started):
    process = started()
    state = LaunchState(tmp_path / "launcher-1.json", a_dead_launcher())
    state.record("worker", 0, [process.pid])
    assert watch(state.path, io.BytesIO(DONE), io.StringIO()) == 0
    assert running(process.pid) and state.path.exists()


def test_the_watchdog_reaps_when_the_launcher_dies_without_a_word(tmp_path, started):
    process = started()
    state = LaunchState(tmp_path / "launcher-1.json", a_dead_launcher())
    state.record("worker", 0, [process.pid])
    said = io.StringIO()
    assert watch(state.path, io.BytesIO(b""), said) == 0
    assert not running(process.pid) and not state.path.exists()
    assert f"the launcher (pid {os.getpid()}) died; stopped worker in" in said.getvalue()


def test_a_real_watchdog_process_reaps_once_its_pipe_closes(tmp_path, started):
    process = started()
    state = LaunchState(tmp_path / "launcher-1.json", a_dead_launcher())
    state.record("worker", 0, [process.pid])
    watchdog = Watchdog.start(state.path)
    assert watchdog.process.stdin is not None
    os.kill(process.pid, 0)  # still ours
    watchdog.process.stdin.close()  # what the kernel does when the launcher dies, SIGKILL included
    deadline = time.monotonic() + 10
    while running(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running(process.pid)
    assert watchdog.process.wait(10) == 0
    assert not state.path.exists()


def ignores(pid: int, signum: int) -> bool:
    """The kernel's view: the signal is in the process's ignored set (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def test_the_watchdog_ignores_the_terminals_signals(tmp_path):
    state = LaunchState(tmp_path / "launcher-1.json", a_dead_launcher())
    watchdog = Watchdog.start(state.path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ignores(watchdog.pid, signal.SIGHUP):
        time.sleep(0.02)
    os.kill(watchdog.pid, signal.SIGINT)
    os.kill(watchdog.pid, signal.SIGHUP)
    time.sleep(0.2)
    assert watchdog.process.poll() is None
    watchdog.release()
    assert watchdog.process.poll() == 0
