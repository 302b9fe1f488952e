"""The launcher: a Procfile run through honcho's pieces, gated on readiness, supervised.

honcho's ``Manager`` starts everything at once, has no readiness hook and kills
everything 5 s after the first exit. We keep its ``Process`` (one shell child
in its own session, output as events) and its ``Printer``, and add: Redis
first, every other service started once what it needs is ready, one table
when all are, a service that exits after it was ready restarted under its
restart rule (:mod:`stack.launcher.restart`) while the others keep running,
and a stop that gives workers a warm shutdown (SIGTERM to the main process
only: a prefork pool child dies on SIGTERM) for ``shutdown_timeout_s`` before
the whole process group is killed.
"""

from __future__ import annotations

import contextlib
import datetime
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, TextIO

from honcho.colour import get_colours
from honcho.printer import Message, Printer
from honcho.process import Process

from stack.checks.probes import safe_check, safe_close, safe_warm
from stack.connection import redact
from stack.errors import ServiceFailed
from stack.launcher.process_tree import ProcessTree
from stack.launcher.procfile import SYSTEM
from stack.launcher.restart import Budget, describe_exit, rules_from_environ
from stack.launcher.running import Running, State, renewed
from stack.launcher.service_logs import ServiceLogs
from stack.launcher.services import Service, child_env, stop_waves
from stack.launcher.state import LaunchState
from stack.launcher.supervision import Supervision, safe_reclaim
from stack.launcher.table import render_json, render_table, row_of
from stack.settings import Settings

TICK_S = 0.02  # main-loop period: event latency and probe cadence
PROBE_INTERVAL_S = 0.05  # between two checks of one service's probe
KILL_WAIT_S = 5.0  # a SIGKILLed process is reaped in milliseconds; never wait forever
# timeout(1) and some wrappers signal the child and then its group: one keypress, two
# deliveries. Only a signal this long after the first means "kill now".
REPEAT_SIGNAL_S = 0.5
PROBE_SPARE_THREADS = 8  # workers scaled up at run time probe too
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # HUP: the terminal closed


class Launcher(Supervision):
    """Runs a list of services: start in dependency order, watch, stop them all.

    Seams (as in honcho): ``_process_ctor`` builds honcho Processes, ``_clock``
    tells time, ``_tree_ctor`` wraps a pid to signal its tree; tests replace them.
    ``state``, when given, records every process started (for the watchdog); ``logs``,
    when given, keeps each service's output in a rotated file. Commands from other
    threads (``post``) are executed by :mod:`stack.launcher.supervision` on this loop.
    """

    def __init__(
        self,
        settings: Settings,
        services: Sequence[Service],
        environ: Mapping[str, str],
        printer: Printer,
        table_output: TextIO | None = None,
        as_json: bool = False,
        state: LaunchState | None = None,
        before_table: Callable[[], Sequence[str]] | None = None,
        logs: ServiceLogs | None = None,
    ) -> None:
        self.settings = settings
        self.before_table = before_table
        self.warnings: list[str] = []
        rules = rules_from_environ(environ, [s.name for s in services])
        self.running = {s.name: Running(s, Budget(rules[s.name])) for s in services}
        self.waves = {n: i for i, wave in enumerate(stop_waves(services)) for n in wave}
        self.state = state
        self.environ = environ
        self.printer = printer
        self.printer.width = max([len(SYSTEM), *(len(s.name) for s in services)])
        self.table_output = table_output or printer.output
        self.as_json = as_json
        self.events: queue.Queue[Message] = queue.Queue()
        self.failure: str | None = None
        self.forced: list[str] = []
        self.stop_signal: int | None = None
        self.hurry = False
        self.stop_requested_at = 0.0
        self.started = 0.0
        self._colours = get_colours()
        self._clock: Callable[[], float] = time.monotonic
        self._process_ctor: Callable[..., Any] = Process
        self._tree_ctor: Callable[[int], Any] = ProcessTree
        self._probes = ThreadPoolExecutor(max_workers=len(services) + PROBE_SPARE_THREADS)
        self.logs = logs
        self._commands = queue.Queue()
        self._closing = False
        self._templates = {}
        self._remember_templates()

    # --- the loop ---------------------------------------------------------------

    def run(self) -> int:
        """Start, wait for a signal or a failure, stop everything. 0: clean stop."""
        self.started = self._clock()
        for r in self.running.values():
            if r.service.external:
                r.state = State.EXTERNAL
            self._probes.submit(safe_warm, r.readiness)
        table_shown = False
        try:
            while self.stop_signal is None and self.failure is None and not self._all_ended():
                self._pump(TICK_S)
                self._drain_commands()
                self._advance()
                if not table_shown and all(r.up for r in self.running.values()):
                    table_shown = True
                    self._check_before_table()
                    self._show_table()
            if self._all_ended():
                self.say("every service ended on its own and stays down: nothing left to run")
        finally:
            self._refuse_pending()
            self.stop()
            self._probes.shutdown(wait=False, cancel_futures=True)
            for r in self.running.values():
                safe_close(r.readiness)
                safe_close(r.service.reclaim)
        if self.failure is not None:
            raise ServiceFailed(self.failure)
        if self.forced:
            why = (
                "on a second signal"
                if self.hurry
                else f"after {self.settings.shutdown_timeout_s:g} s (raise STACK_SHUTDOWN_TIMEOUT)"
            )
            self.say(f"killed {why}: {', '.join(self.forced)}")
            return 1
        return 0

    def _advance(self) -> None:
        now = self._clock()
        for r in list(self.running.values()):
            deps_up = all(self.running[name].up for name in r.service.requires)
            if r.state is State.PENDING and deps_up:
                self._start(r)
            elif r.state is State.STARTING:
                self._check_starting(r, now)
            elif r.state is State.READY and r.exited:
                self._after_exit(r, now, "while running")
            elif r.state is State.RESTARTING and now >= (r.restart_at or now) and deps_up:
                self._start(r)
            if r.reclaim is not None and r.reclaim.done():
                self._report_reclaim(r)
            self._supervise(r, now)

    def _all_ended(self) -> bool:
        """Every service we started ended cleanly and stays down: nothing left to supervise."""
        ours = [r for r in self.running.values() if not r.service.external]
        return bool(ours) and all(r.state is State.EXITED for r in ours)

    def _after_exit(self, r: Running, now: float, when: str) -> None:
        """Restart under the service's rule, leave it down, or (budget spent) stop the stack."""
        assert r.returncode is not None
        decision = r.budget.on_exit(r.returncode, now)
        rc = describe_exit(r.returncode)
        reason = f"{r.service.name} exited ({rc}) {when}: {decision.reason}"
        if decision.fatal:
            self._fail(r, reason)
            return
        self.say(reason)
        if not decision.restart:
            r.state = State.EXITED
            return
        r.state, r.restart_at = State.RESTARTING, now + decision.delay_s
        if r.service.reclaim is not None:
            r.reclaim = self._probes.submit(
                safe_reclaim, r.service.reclaim, r.spawned_wall, time.time()
            )

    def _report_reclaim(self, r: Running) -> None:
        assert r.reclaim is not None
        line, r.reclaim = r.reclaim.result(), None
        if line:
            self.say(f"{r.service.name}: {line}")

    def _check_starting(self, r: Running, now: float) -> None:
        name, probe = r.service.name, r.readiness
        if r.exited and r.ever_ready and not r.manual:  # died again restarting: the rule decides
            self._after_exit(r, now, f"during restart {r.budget.count}")
        elif r.exited:
            self._fail(r, f"{name} exited (rc={r.returncode}) during start-up")
        elif r.probe is not None and r.probe.done():
            ok = r.probe.result()
            r.probe = None
            if ok:
                why = "its start on request" if r.manual else f"restart {r.budget.count}"
                r.state, r.manual = State.READY, False
                took = now - (r.started_at or now)
                if r.tree is not None:
                    r.tree.refresh()
                    self._record(r)
                if r.ever_ready:
                    self.say(f"{name} ready again ({probe.description}) {took:.2f} s after {why}")
                else:
                    r.ever_ready, r.ready_after_s = True, now - self.started
                    self.say(f"{name} ready ({probe.description}) after {r.ready_after_s:.2f} s")
        elif now - (r.started_at or now) > self.settings.ready_timeout_s:
            self._fail(
                r,
                f"{name} did not become ready within {self.settings.ready_timeout_s:g} s "
                f"(waiting for {probe.description}: {probe.problem}); "
                "raise STACK_READY_TIMEOUT if the machine is just slow",
            )
        elif r.probe is None and now - r.last_probe_at >= PROBE_INTERVAL_S:
            r.last_probe_at = now
            r.probe = self._probes.submit(safe_check, probe)

    def _start(self, r: Running) -> None:
        service = r.service
        env = child_env(self.settings, self.environ, service)
        r.colour = r.colour or next(self._colours)
        if r.ever_ready:  # a restart: readiness is this new instance's, not the dead one's
            old, r.readiness = r.readiness, renewed(r.service.probe)
            if old is not r.readiness:
                self._probes.submit(safe_close, old)
        r.pid = r.tree = r.returncode = r.probe = None
        r.starts, r.spawned_at = r.starts + 1, self._clock()
        r.spawned_wall = time.time()
        r.process = self._process_ctor(service.command, name=service.name, colour=r.colour, env=env)
        r.state, r.started_at, r.last_probe_at = State.STARTING, self._clock(), 0.0
        thread = threading.Thread(
            target=r.process.run, args=(self.events,), name=f"up-{service.name}", daemon=True
        )
        thread.start()
        self._wait_for_pid(r)

    def _wait_for_pid(self, r: Running) -> None:
        """The 'start' event carries the pid; a stop must never miss a started process."""
        while r.pid is None and not r.exited:
            self._pump(TICK_S)

    def _pump(self, timeout_s: float) -> None:
        """Print every pending output line and record starts and exits."""
        try:
            message = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return
        while True:
            self._handle(message)
            try:
                message = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, message: Message) -> None:
        r = self.running.get(message.name)
        if r is None:
            return
        if message.type == "line":
            text = (
                message.data.decode("utf-8", "replace")
                if isinstance(message.data, bytes)
                else str(message.data)
            )
            r.tail.append(text.rstrip("\n"))
            if self.logs is not None:
                self.logs.write(r.service.name, text)
            observe = getattr(r.readiness, "observe", None)
            if observe is not None and r.state is State.STARTING:
                observe(text)
            self._write(message)
        elif message.type == "start":
            r.pid = int(message.data["pid"])
            r.tree = self._tree_ctor(r.pid)
            self._record(r)
        elif message.type == "stop":  # an exit on its own is reported by _advance
            r.returncode = int(message.data["returncode"])
            if r.state is State.STOPPING:
                r.state = State.STOPPED
                took = self._clock() - (r.stopping_at or self._clock())
                self.say(f"{r.service.name} stopped (rc={r.returncode}) after {took:.2f} s")

    def _record(self, r: Running) -> None:
        """The state file lists every process we started (the watchdog reaps by it)."""
        if self.state is None or r.pid is None:
            return
        pids = r.tree.pids() if isinstance(r.tree, ProcessTree) else [r.pid]
        with contextlib.suppress(OSError):  # a full disk must not stop the stack
            self.state.record(r.service.name, self.waves.get(r.service.name, 0), pids)

    def _fail(self, r: Running, reason: str) -> None:
        r.state = State.FAILED
        tail = "\n".join(f"  {line}" for line in r.tail) or "  (no output)"
        if r.manual:  # started on command: it stays failed, the rest of the stack runs on
            if r.tree is not None and not r.exited:
                r.tree.signal(signal.SIGKILL, True)
            name = r.service.name
            self.say(f"{reason}; {name} is failed: fix it, then `celery-stack restart {name}`")
            self.say(f"{name}'s last {len(r.tail)} log lines:\n{tail}")
            return
        self.failure = f"{reason}; its last {len(r.tail)} log lines:\n{tail}"
        self.say(reason)

    # --- stopping -----------------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        """SIGINT/SIGTERM: stop gracefully; a second one, a moment later, kills at once."""
        now = self._clock()
        if self.stop_signal is None:
            self.stop_signal, self.stop_requested_at = signum, now
        elif now - self.stop_requested_at > REPEAT_SIGNAL_S:
            self.hurry = True
        if self.failure is not None:
            self.hurry = True

    def stop(self) -> None:
        """Dependents first, Redis last; each wave gets the warm-shutdown timeout."""
        if self.stop_signal is not None:
            self.say(f"{signal.Signals(self.stop_signal).name} received: stopping")
        for wave in stop_waves([r.service for r in self.running.values()]):
            members = [self.running[name] for name in wave]
            self._stop_wave([r for r in members if r.pid is not None and not r.service.external])

    def _stop_wave(self, members: list[Running]) -> None:
        for r in members:
            if not r.exited and r.tree is not None:
                if r.state is not State.FAILED:
                    r.state = State.STOPPING
                r.stopping_at = self._clock()
                r.tree.refresh()
                r.tree.signal(signal.SIGTERM, False)
        deadline = self._clock() + self.settings.shutdown_timeout_s
        while any(not r.exited for r in members) and self._clock() < deadline and not self.hurry:
            self._pump(TICK_S)
        for r in members:
            if not r.exited:
                r.state = State.KILLED
                self.forced.append(r.service.name)
            if r.tree is not None:  # the whole tree, even when the main process exited
                r.tree.signal(signal.SIGKILL, True)
        reaped_by = self._clock() + KILL_WAIT_S
        while any(not r.exited for r in members) and self._clock() < reaped_by:
            self._pump(TICK_S)

    # --- output ---------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.logs is not None:
            self.logs.write(SYSTEM, text + "\n")
        self._write(Message("line", text + "\n", datetime.datetime.now(), SYSTEM, None))

    def _write(self, message: Message) -> None:
        """A closed terminal or pipe must not stop us from stopping the stack."""
        with contextlib.suppress(OSError, ValueError):
            self.printer.write(message)

    def rows(self) -> list[dict[str, Any]]:
        return [
            row_of(r.service, r.state.value, r.pid, r.ready_after_s) for r in self.running.values()
        ]

    def _check_before_table(self) -> None:
        """What the table must not hide (queues no worker consumes), said just before it."""
        if self.before_table is None:
            return
        try:
            self.warnings = list(self.before_table())
        except Exception as exc:  # Redis hiccup, an odd reply: the stack still runs
            self.warnings = [f"could not check the queues' consumers ({type(exc).__name__}: {exc})"]
        for line in self.warnings:
            self.say(f"WARNING: {line}")

    def _show_table(self) -> None:
        total = self._clock() - self.started
        rows, notes, broker = self.rows(), self.warnings, redact(self.settings.broker_url)
        text = (
            render_json(rows, total, notes, broker)
            if self.as_json
            else render_table(rows, total, broker)
        )
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.table_output, flush=True)
