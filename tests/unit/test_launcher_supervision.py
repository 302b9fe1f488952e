"""Commands on the launcher's loop (restart, stop, start, scale, ps) with honcho-style fakes."""

import signal
import threading
import time

import pytest

from stack.launcher.control import Command, ControlError
from stack.launcher.manager import Launcher, State
from tests.unit.test_launcher_manager import Script, World, launcher, stack


def running(up: Launcher) -> threading.Thread:
    thread = threading.Thread(target=up.run, daemon=True)
    thread.start()
    until(lambda: all(r.up for r in up.running.values()))
    return thread


def until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def stopped(up: Launcher, thread: threading.Thread) -> None:
    up.request_stop(signal.SIGINT)
    thread.join(10)
    assert not thread.is_alive()


def test_a_posted_restart_stops_the_worker_warmly_then_starts_and_gates_it_again():
    world = World()
    up, out = launcher(world, stack(world))
    thread = running(up)
    first = up.running["worker"].pid
    up.post(Command("restart", ("worker",)))
    until(lambda: up.running["worker"].pid != first and up.running["worker"].state is State.READY)
    stopped(up, thread)
    assert ("worker", signal.SIGTERM, False) in world.signals
    assert [entry for entry in world.log if entry == ("start", "worker")] == [
        ("start", "worker")
    ] * 2
    assert [entry for entry in world.log if entry == ("start", "redis")] == [("start", "redis")]
    assert "worker ready again (fake probe)" in out.getvalue()
    assert "after its start on request" in out.getvalue()


def test_a_restart_that_fails_to_start_marks_it_failed_and_a_later_restart_brings_it_back():
    world = World()
    up, out = launcher(world, stack(world))
    thread = running(up)
    world.scripts["worker"] = Script(lines=("ImportError: broken",), exits_with=1)
    up.post(Command("restart", ("worker",)))
    until(lambda: up.running["worker"].state is State.FAILED)
    rows = {row["name"]: row for row in up.request(Command("ps")).result(5)["services"]}
    assert rows["worker"]["state"] == "failed" and rows["api"]["state"] == "ready"
    assert up.failure is None and thread.is_alive()  # the stack runs on
    assert "ImportError: broken" in out.getvalue()
    world.scripts["worker"] = Script()
    up.post(Command("restart", ("worker",)))
    until(lambda: up.running["worker"].state is State.READY)
    stopped(up, thread)


def test_stop_keeps_a_service_down_until_start():
    world = World()
    up, _ = launcher(world, stack(world))
    thread = running(up)
    up.post(Command("stop", ("api",)))
    until(lambda: up.running["api"].state is State.STOPPED)
    time.sleep(0.2)
    assert up.running["api"].state is State.STOPPED  # not restarted by its policy
    up.post(Command("start", ("api",)))
    until(lambda: up.running["api"].state is State.READY)
    assert up.request(Command("ps")).result(5)["services"][1]["restarts"] == 1
    stopped(up, thread)


def test_an_unknown_name_is_refused_listing_the_known_ones():
    world = World()
    up, _ = launcher(world, stack(world))
    thread = running(up)
    with pytest.raises(
        ControlError, match=r"no service is named 'wrk' \(known: redis, api, worker\)"
    ):
        up.request(Command("restart", ("wrk",))).result(5)
    with pytest.raises(ControlError, match="'api' is not a Celery worker line"):
        up.request(Command("scale", ("api",), 2)).result(5)
    stopped(up, thread)


def test_a_command_after_the_stop_began_is_refused():
    world = World()
    up, _ = launcher(world, stack(world))
    thread = running(up)
    stopped(up, thread)
    with pytest.raises(ControlError, match="stopping"):
        up.request(Command("ps")).result(1)
