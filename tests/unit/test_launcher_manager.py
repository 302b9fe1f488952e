"""The launcher's loop with honcho-style fakes: fake processes, probes and signals."""

import io
import itertools
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest
from honcho.printer import Message, Printer

from stack.errors import ServiceFailed
from stack.launcher.manager import Launcher, State
from stack.launcher.services import Service
from stack.settings import Settings

pids = itertools.count(1000)


@dataclass
class Script:
    """What a fake service does: print lines, maybe exit on its own, maybe ignore SIGTERM."""

    lines: tuple[str, ...] = ()
    exits_with: int | None = None
    ignores_sigterm: bool = False


@dataclass
class World:
    """Everything the fakes saw, in order."""

    log: list[tuple[str, str]] = field(default_factory=list)
    signals: list[tuple[str, int, bool]] = field(default_factory=list)
    processes: dict[int, "FakeProcess"] = field(default_factory=dict)
    scripts: dict[str, Script] = field(default_factory=dict)

    def process_ctor(self, cmd, name, colour, env):
        return FakeProcess(self, name, env, self.scripts.get(name, Script()))

    def tree_ctor(self, pid):
        return FakeTree(self, pid)

    def signal_tree(self, pid, signum, whole_group):
        process = self.processes[pid]
        self.signals.append((process.name, signum, whole_group))
        if signum == signal.SIGKILL or not process.script.ignores_sigterm:
            process.exit(-signum)


@dataclass
class FakeTree:
    world: World
    pid: int

    def refresh(self):
        pass

    def signal(self, signum, whole_group):
        self.world.signal_tree(self.pid, signum, whole_group)


class FakeProcess:
    def __init__(self, world: World, name: str, env: dict, script: Script) -> None:
        self.world, self.name, self.env, self.script = world, name, env, script
        self.pid = next(pids)
        self.returncode: int | None = None
        self.done = threading.Event()

    def exit(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
            self.done.set()

    def run(self, events):
        self.world.processes[self.pid] = self
        self.world.log.append(("start", self.name))
        events.put(Message("start", {"pid": self.pid}, _now(), self.name, None))
        for line in self.script.lines:
            events.put(Message("line", line.encode() + b"\n", _now(), self.name, None))
        if self.script.exits_with is not None:
            self.exit(self.script.exits_with)
        self.done.wait()
        events.put(Message("stop", {"returncode": self.returncode}, _now(), self.name, None))


@dataclass
class FakeProbe:
    world: World
    name: str
    ready_after_checks: int = 2
    checks: int = 0
    description: str = "fake probe"
    problem: str = "not yet"

    def warm(self) -> None:
        pass

    def check(self) -> bool:
        self.checks += 1
        ready = self.checks >= self.ready_after_checks
        if ready and ("ready", self.name) not in self.world.log:
            self.world.log.append(("ready", self.name))
        return ready


def _now():
    import datetime

    return datetime.datetime.now()


def stack(world: World, names=("redis", "api", "worker"), **probe_kwargs) -> list[Service]:
    return [
        Service(
            name,
            f"run {name}",
            FakeProbe(world, name, **probe_kwargs.get(name, {})),
            requires=() if name == "redis" else ("redis",),
        )
        for name in names
    ]


def launcher(world: World, services, **env: str) -> tuple[Launcher, io.StringIO]:
    settings = Settings.load(
        environ={"STACK_SHUTDOWN_TIMEOUT": "5", "STACK_DATA_DIR": "/tmp/stack-unit", **env}
    )
    out = io.StringIO()
    up = Launcher(settings, services, {"PATH": "/usr/bin"}, Printer(out, colour=False))
    up._process_ctor = world.process_ctor
    up._tree_ctor = world.tree_ctor
    return up, out


def interrupt_when_ready(up: Launcher, signum=signal.SIGINT) -> threading.Thread:
    def wait_then_interrupt():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(r.up for r in up.running.values()):
                up.request_stop(signum)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread


def test_services_start_only_once_redis_is_ready():
    world = World()
    up, _ = launcher(world, stack(world, redis={"ready_after_checks": 3}))
    interrupt_when_ready(up)
    assert up.run() == 0
    log = world.log
    assert log.index(("ready", "redis")) < log.index(("start", "api"))
    assert log.index(("ready", "redis")) < log.index(("start", "worker"))


def test_the_table_lists_every_service_once_all_are_ready():
    world = World()
    up, out = launcher(world, stack(world))
    interrupt_when_ready(up)
    up.run()
    text = out.getvalue()
    assert text.count("3 services ready in") == 1
    table = text[text.index("service  state") :]
    assert [line.split()[0] for line in table.splitlines()[2:5]] == ["redis", "api", "worker"]


def test_sigint_sends_a_warm_sigterm_to_dependents_first_and_redis_last():
    world = World()
    up, _ = launcher(world, stack(world))
    interrupt_when_ready(up)
    assert up.run() == 0
    warm = [(name, whole) for name, signum, whole in world.signals if signum == signal.SIGTERM]
    assert warm == [("api", False), ("worker", False), ("redis", False)]
    assert all(r.state is State.STOPPED for r in up.running.values())


def test_after_the_warm_stop_each_process_group_is_killed_so_no_orphan_survives():
    world = World()
    up, _ = launcher(world, stack(world))
    interrupt_when_ready(up)
    up.run()
    killed = [name for name, signum, whole in world.signals if signum == signal.SIGKILL and whole]
    assert sorted(killed) == ["api", "redis", "worker"]


def test_a_worker_that_overstays_the_shutdown_timeout_is_killed_and_the_exit_code_says_so():
    world = World(scripts={"worker": Script(ignores_sigterm=True)})
    up, out = launcher(world, stack(world), STACK_SHUTDOWN_TIMEOUT="0.2")
    interrupt_when_ready(up)
    assert up.run() == 1
    assert up.running["worker"].state is State.KILLED
    assert "killed after 0.2 s (raise STACK_SHUTDOWN_TIMEOUT): worker" in out.getvalue()


def test_a_service_that_dies_during_start_up_stops_the_launch_with_its_last_lines():
    world = World(
        scripts={"api": Script(lines=("booting", "ImportError: no module api"), exits_with=1)}
    )
    up, _ = launcher(world, stack(world, api={"ready_after_checks": 10_000}))
    with pytest.raises(ServiceFailed) as failed:
        up.run()
    message = str(failed.value)
    assert "api exited (rc=1) during start-up" in message
    assert "ImportError: no module api" in message
    assert world.processes and all(p.returncode is not None for p in world.processes.values())


def test_a_service_that_never_gets_ready_fails_naming_what_it_waited_for():
    world = World()
    services = stack(world, worker={"ready_after_checks": 10_000})
    up, _ = launcher(world, services, STACK_READY_TIMEOUT="0.3")
    with pytest.raises(ServiceFailed, match=r"worker did not become ready within 0.3 s.*fake"):
        up.run()


def test_a_service_that_exits_after_ready_stops_the_stack_with_a_failure():
    world = World()
    up, _ = launcher(world, stack(world))

    def crash_worker_when_ready():
        while not all(r.up for r in up.running.values()):
            time.sleep(0.01)
        next(p for p in world.processes.values() if p.name == "worker").exit(2)

    threading.Thread(target=crash_worker_when_ready, daemon=True).start()
    with pytest.raises(ServiceFailed, match=r"worker exited \(rc=2\) while running"):
        up.run()


def test_an_external_redis_is_probed_but_never_started_or_signalled():
    world = World()
    services = stack(world)
    redis = services[0]
    services[0] = Service(redis.name, redis.command, redis.probe, external=True)
    up, _ = launcher(world, services)
    interrupt_when_ready(up)
    assert up.run() == 0
    assert ("start", "redis") not in world.log
    assert all(name != "redis" for name, _, _ in world.signals)


def test_children_get_the_service_env_on_top_of_the_stack_env():
    world = World()
    services = stack(world)
    api = services[1]
    services[1] = Service(
        api.name, api.command, api.probe, requires=api.requires, env={"EXTRA": "1"}
    )
    up, _ = launcher(world, services)
    interrupt_when_ready(up)
    up.run()
    env = next(p.env for p in world.processes.values() if p.name == "api")
    assert env["EXTRA"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_a_log_line_probe_sees_the_service_output():
    from stack.checks.probes import LogLine

    world = World(scripts={"beat": Script(lines=("beat: Starting...",))})
    services = [Service("beat", "run beat", LogLine("beat: Starting..."))]
    up, _ = launcher(world, services)
    interrupt_when_ready(up)
    assert up.run() == 0
    assert up.running["beat"].ready_after_s is not None
