"""The launcher's loop with honcho-style fakes: fake processes, probes and signals."""

import dataclasses
import io
import itertools
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest
from honcho.printer import Message, Printer

from stack.errors import ServiceFailed, SettingsError
from stack.launcher.manager import Launcher, State
from stack.launcher.restart import BACKOFF_FIRST_S
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
    """A Launcher on fakes; ``env`` is its environment (settings and restart rules alike)."""
    environ = {"STACK_SHUTDOWN_TIMEOUT": "5", "STACK_DATA_DIR": "/tmp/stack-unit", **env}
    settings = Settings.load(environ=environ)
    out = io.StringIO()
    up = Launcher(settings, services, {"PATH": "/usr/bin", **env}, Printer(out, colour=False))
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


def crash_when_ready(up: Launcher, world: World, name: str, returncode: int, times: int = 1):
    """Each time ``name`` is ready (and the stack is), its current process exits."""

    def crash():
        for _ in range(times):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (
                all(r.up for r in up.running.values()) and up.stop_signal is None
            ):
                time.sleep(0.01)
            live = [p for p in world.processes.values() if p.name == name and p.returncode is None]
            if not live:
                return
            live[-1].exit(returncode)
            while up.running[name].state is State.READY:
                time.sleep(0.01)

    thread = threading.Thread(target=crash, daemon=True)
    thread.start()
    return thread


def starts_of(world: World, name: str) -> int:
    return world.log.count(("start", name))


def stop_once(up: Launcher, condition, timeout_s: float = 20) -> threading.Thread:
    """SIGINT once ``condition()`` holds (a test never hangs: SIGINT anyway at the deadline)."""

    def wait_then_interrupt():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition():
            time.sleep(0.01)
        up.request_stop(signal.SIGINT)

    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread


def test_with_policy_no_a_service_that_exits_after_ready_stops_the_stack_with_a_failure():
    world = World()
    up, _ = launcher(world, stack(world), STACK_RESTART_POLICY="no")
    crash_when_ready(up, world, "worker", 2)
    with pytest.raises(
        ServiceFailed, match=r"worker exited \(rc=2\) while running: restart policy no"
    ):
        up.run()
    assert starts_of(world, "worker") == 1


def test_a_worker_killed_after_ready_is_restarted_and_the_others_keep_running():
    world = World()
    up, out = launcher(world, stack(world))
    crash_when_ready(up, world, "worker", -signal.SIGKILL)
    stop_once(
        up, lambda: starts_of(world, "worker") == 2 and all(r.up for r in up.running.values())
    )
    assert up.run() == 0
    text = out.getvalue()
    assert (
        "worker exited (rc=-9, SIGKILL) while running: restart 1 of 5 within 60 s, in 0.1 s "
        "(policy on-failure)" in text
    )
    assert "worker ready again (fake probe)" in text
    assert (starts_of(world, "api"), starts_of(world, "redis")) == (1, 1)
    assert all(signum != signal.SIGKILL or whole for _, signum, whole in world.signals)
    assert [name for name, signum, _ in world.signals if signum == signal.SIGTERM] == [
        "api",
        "worker",
        "redis",
    ]  # nothing was stopped before the SIGINT


def test_a_restart_waits_out_its_backoff():
    world = World()
    up, _ = launcher(world, stack(world))
    crashed_at: list[float] = []
    original = world.process_ctor

    def timed_ctor(cmd, name, colour, env):
        if name == "worker":
            crashed_at.append(time.monotonic())
        return original(cmd, name, colour, env)

    up._process_ctor = timed_ctor
    crash_when_ready(up, world, "worker", 1)
    stop_once(up, lambda: starts_of(world, "worker") == 2)
    up.run()
    assert len(crashed_at) == 2 and crashed_at[1] - crashed_at[0] >= BACKOFF_FIRST_S


def test_a_service_that_exhausts_its_restart_budget_stops_the_stack_with_its_log_tail():
    world = World(scripts={"worker": Script(lines=("Unrecoverable error: boom",))})
    up, _ = launcher(world, stack(world), STACK_RESTART_MAX="1")
    crash_when_ready(up, world, "worker", 70, times=2)
    with pytest.raises(ServiceFailed) as failed:
        up.run()
    message = str(failed.value)
    assert "worker exited (rc=70) while running: restart budget exhausted" in message
    assert "1 restart within 60 s; raise STACK_RESTART_MAX or STACK_RESTART_WINDOW" in message
    assert "Unrecoverable error: boom" in message
    assert starts_of(world, "worker") == 2
    assert all(p.returncode is not None for p in world.processes.values())


def test_a_restart_that_dies_during_start_up_is_decided_by_the_rule_again():
    world = World()
    up, out = launcher(world, stack(world), STACK_RESTART_MAX="2")

    def crash_then_break_the_worker():
        while not all(r.up for r in up.running.values()):
            time.sleep(0.01)
        world.scripts["worker"] = Script(lines=("ImportError: broken",), exits_with=1)
        next(p for p in world.processes.values() if p.name == "worker").exit(1)

    threading.Thread(target=crash_then_break_the_worker, daemon=True).start()
    with pytest.raises(ServiceFailed, match="exited \\(rc=1\\) during restart 2: restart budget"):
        up.run()
    assert "worker exited (rc=1) during restart 1: restart 2 of 2" in out.getvalue()
    assert starts_of(world, "worker") == 3


def test_on_failure_a_clean_exit_stays_down_while_the_others_keep_running():
    world = World()
    up, out = launcher(world, stack(world))
    crash_when_ready(up, world, "worker", 0)
    stop_once(up, lambda: up.running["worker"].state is State.EXITED)
    assert up.run() == 0
    assert "worker exited (rc=0) while running: a clean exit, not restarted" in out.getvalue()
    assert starts_of(world, "worker") == 1
    assert up.running["api"].state is State.STOPPED


def test_up_ends_with_0_once_every_service_ended_cleanly_and_stays_down():
    world = World()
    up, out = launcher(world, [Service("job", "run job", FakeProbe(world, "job"))])
    crash_when_ready(up, world, "job", 0)
    assert up.run() == 0
    assert "every service ended on its own" in out.getvalue()


def test_a_per_service_policy_always_restarts_even_a_clean_exit():
    world = World()
    up, out = launcher(world, stack(world), STACK_RESTART_POLICY_WORKER="always")
    crash_when_ready(up, world, "worker", 0)
    stop_once(up, lambda: starts_of(world, "worker") == 2 and up.running["worker"].up)
    assert up.run() == 0
    assert "(policy always)" in out.getvalue()


def test_a_bad_restart_setting_is_refused_before_anything_starts():
    world = World()
    with pytest.raises(SettingsError, match=r"STACK_RESTART_POLICY_API: expected one of always"):
        launcher(world, stack(world), STACK_RESTART_POLICY_API="sometimes")
    assert world.log == []


@dataclass
class FakeReclaimer:
    calls: list[tuple[float, float]] = field(default_factory=list)

    def reclaim(self, since: float, until: float) -> str:
        self.calls.append((since, until))
        return "requeued 3 messages its predecessor held unacked"


def test_a_restarted_service_reclaims_what_its_dead_predecessor_held():
    world = World()
    services = stack(world)
    reclaimer = FakeReclaimer()
    services[2] = dataclasses.replace(services[2], reclaim=reclaimer)
    up, out = launcher(world, services)
    before = time.time()
    crash_when_ready(up, world, "worker", -signal.SIGKILL)
    stop_once(up, lambda: "requeued" in out.getvalue() and up.running["worker"].up)
    up.run()
    assert len(reclaimer.calls) == 1
    since, until = reclaimer.calls[0]
    assert before - 5 < since < until <= time.time()  # the dead instance's life
    assert "worker: requeued 3 messages its predecessor held unacked" in out.getvalue()


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
